"""The study's statistics and tables by hand (benchmarks/study: stats.py, report.py)."""

import json

import pytest

from benchmarks.study.protocol import Protocol
from benchmarks.study.report import write_report
from benchmarks.study.stats import category_share, choose_lr, paired, per_item_mean, rate


def _items(cfs, categories=None):
    categories = categories or ["correct" if c else "content_filling" for c in cfs]
    return [{"id": f"i{k}", "category": cat, "ts": 1.0, "pi": 1.0, "cf": float(c)}
            for k, (c, cat) in enumerate(zip(cfs, categories))]


def test_seeds_are_averaged_per_item_and_must_score_the_same_items():
    runs = [_items([1, 0, 1, 0]), _items([1, 1, 0, 0])]
    assert per_item_mean(runs, "cf") == [1.0, 0.5, 0.5, 0.0]
    shuffled = list(reversed(_items([1, 1, 0, 0])))
    with pytest.raises(ValueError, match="different items"):
        per_item_mean([runs[0], shuffled], "cf")


def test_paired_difference_separates_only_when_its_interval_excludes_zero():
    base = [0.0] * 50 + [1.0] * 50
    better = paired(base, [1.0] * 100)  # +0.5, every changed item in one direction
    assert better["mean"] == 0.5 and better["separates"] and better["ci95"][0] > 0.3
    noise = paired(base, [1.0] * 50 + [0.0] * 50)  # mean 0, items swing both ways
    assert noise["mean"] == 0.0 and not noise["separates"] and noise["ci95"][0] < 0 < noise["ci95"][1]


def test_rate_counts_categories_per_item_over_runs():
    runs = [_items([0, 0], ["tool_hallucination", "wrong_tool"]), _items([0, 0], ["tool_hallucination", "correct"])]
    assert rate(runs, {"tool_hallucination"})["mean"] == 0.5  # item 0: 2/2, item 1: 0/2
    assert category_share(runs, {"wrong_tool"}) == [0.0, 0.5]


def test_the_learning_rate_with_the_best_validation_cf_wins_ties_go_to_the_smaller():
    assert choose_lr({1e-4: {"cf": 0.2, "ts": 0.9}, 3e-4: {"cf": 0.4, "ts": 0.1}, 1e-3: {"cf": 0.3, "ts": 1}}) == 3e-4
    assert choose_lr({1e-4: {"cf": 0.4, "ts": 0.5}, 3e-4: {"cf": 0.4, "ts": 0.5}}) == 1e-4
    assert choose_lr({1e-4: {"cf": 0.4, "ts": 0.5}, 3e-4: {"cf": 0.4, "ts": 0.6}}) == 3e-4


def test_the_report_reads_finished_stages_and_pairs_variants_with_plain(tmp_path):
    p = Protocol(lrs=(1e-4, 3e-4, 1e-3), seeds=(0, 1))
    for variant, seed, cfs in [("plain", 0, [0, 0, 1, 0]), ("plain", 1, [0, 0, 1, 0]),
                               ("mae_pkt", 0, [1, 0, 1, 1]), ("mae_pkt", 1, [1, 1, 1, 0])]:
        scores = {"toolworld_heldout": _items(cfs), "mae_repeats": [{"id": "e0", "repeated": float(seed)}]}
        (tmp_path / f"test_{variant}_s{seed}.json").write_text(json.dumps({"scores": scores, "stage_wall_s": 1800}))
    for lr, cfs in ((1e-4, [0, 1, 0, 0]), (3e-4, [1, 1, 0, 0]), (1e-3, [1, 0, 1, 0])):  # a tie: the smaller rate
        (tmp_path / f"sweep_plain_lr{lr:g}.json").write_text(json.dumps({"val": {"toolworld_val": _items(cfs)}}))
    report = write_report(tmp_path, p)
    assert report["sweeps"]["plain"]["chosen"] == 3e-4 and report["sweeps"]["plain"]["val"][1e-4]["cf"] == 0.25
    assert "mae" not in report["sweeps"]  # no sweep stage done
    assert "| plain | 25.0 | **50.0** | 50.0 |" in (tmp_path / "report.md").read_text()
    assert report["arms"]["plain"]["toolworld_heldout"]["cf"]["mean"] == 0.25
    assert report["arms"]["mae_pkt"]["toolworld_heldout"]["cf"]["mean"] == 0.75  # items 1, .5, 1, .5
    assert report["paired_vs_plain"]["mae_pkt"]["toolworld_heldout"]["cf"]["mean"] == pytest.approx(0.5)  # 1, .5, 0, .5
    assert report["arms"]["plain"]["mae_repeats"]["mean"] == 0.5
    assert report["wall_hours"] == 2.0
    assert "| toolworld_heldout | 4 × 2 |" in (tmp_path / "report.md").read_text()
    assert "| 100.0 / 75.0, 100.0 / 75.0 |" in (tmp_path / "report.md").read_text()  # TS / CF of each seed


def test_a_hallucinated_tool_counts_as_toolworlds_only_when_its_name_is_in_the_training_catalog():
    from benchmarks.study.report import catalog_share

    def run(*outputs):
        cats = ["tool_hallucination", "tool_hallucination", "wrong_tool", "tool_hallucination"]
        return [{"id": f"i{k}", "category": c, "output": o} for k, (c, o) in enumerate(zip(cats, outputs))]

    seed0 = run("get_weather_current(city='Oslo')", "lookup_city(name='Oslo')", "search_flights(origin='a')",
                "not a call")
    seed1 = run("get_weather_current(city='Oslo')", "get_stock_price(symbol='X')", "search_flights(origin='a')",
                "send_email(to='x')")
    # item 0: a ToolWorld name both seeds; 1: an invented name, then a ToolWorld one; 2: a wrong tool from the
    # item's own list, not a hallucination; 3: unparseable, then a ToolWorld name
    assert catalog_share([seed0, seed1]) == [1.0, 0.5, 0.0, 0.5]


def test_mechanism_rates_are_paired_per_item_too():
    from benchmarks.study.report import differences

    arms = {"plain": [_items([0, 0], ["wrong_tool", "wrong_tool"])],
            "pkt": [_items([0, 1], ["tool_hallucination", "correct"])]}
    diff = differences({name: [{"set": run} for run in runs] for name, runs in arms.items()})["pkt"]["set"]
    assert diff["wrong_tool"]["mean"] == -1.0 and diff["tool_hallucination"]["mean"] == 0.5
    assert diff["cf"]["mean"] == 0.5


def test_rl_arms_pair_with_the_sft_run_they_started_from_and_rewards_with_irm(tmp_path):
    stages = {"test_mae_s0": [0, 0, 1, 0], "test_rl_grpo_irm": [1, 0, 1, 0], "test_rl_grpo_irm_s1": [1, 1, 1, 0],
              "test_rl_grpo_binary": [1, 1, 1, 1]}
    for stage, cfs in stages.items():
        (tmp_path / f"{stage}.json").write_text(json.dumps({"scores": {"toolworld_heldout": _items(cfs)}}))
    for arm in ("grpo_irm", "grpo_binary"):
        (tmp_path / f"rl_{arm}.json").write_text(json.dumps({"start": "mae", "adapter": "a"}))
    report = write_report(tmp_path, Protocol(seeds=(0,), rl_seeds=(0, 1)))
    pairs = report["rl_paired"]
    assert report["arms"]["grpo_irm"]["toolworld_heldout"]["seeds"] == 2
    assert pairs["grpo_irm − mae seed 0"]["toolworld_heldout"]["cf"]["mean"] == 0.375  # seed means 1, .5, 1, 0
    assert pairs["grpo_binary − mae seed 0"]["toolworld_heldout"]["cf"]["mean"] == 0.75
    assert pairs["grpo_binary − grpo_irm"]["toolworld_heldout"]["cf"]["mean"] == 0.375
    assert "### grpo_binary − grpo_irm (paired per item)" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "differences.png").stat().st_size > 0


def test_mae_situations_are_the_training_datas_erroneous_calls_in_their_context():
    from benchmarks.study.run import _same_call, error_situations
    from tl_lightning.data.toolworld import ToolWorld

    p = Protocol(train_size=20)
    situations = error_situations(p)
    assert situations  # ToolWorld's 17% error rate leaves some in 20 conversations
    train = {c.id: c for c in ToolWorld(seed=0).split("train", 20)}
    for prompt, bad in situations:
        conv_id, index = prompt.id.rsplit("#", 1)
        original = train[conv_id].messages
        assert prompt.messages == original[:int(index)]  # the context up to the erroneous call
        assert original[int(index)].calls[0].name == bad["name"]
        assert original[int(index) + 1].role == "tool"  # its error feedback follows
    call = situations[0][1]
    args = ", ".join(f"{k}={v!r}" for k, v in call["arguments"].items())
    assert _same_call(f"{call['name']}({args})", call)
    assert not _same_call(f"{call['name']}({args})\n{call['name']}({args})", call)  # two calls are not a repeat


def test_a_kept_stage_needs_its_adapter_only_where_a_later_stage_runs_and_retrains_it_where_missing(tmp_path):
    from benchmarks.study.run import ensure_adapter

    kept = tmp_path / "kept" / "hf" / "final"
    kept.mkdir(parents=True)
    (kept / "adapter_config.json").write_text("{}")
    retrained = []

    def retrain():
        retrained.append(1)
        return {"adapter": str(tmp_path / "again")}

    assert ensure_adapter({"adapter": str(kept)}, retrain) == str(kept) and not retrained
    gone = {"adapter": str(tmp_path / "other-machine" / "hf" / "final")}  # a result resumed on a new machine
    assert ensure_adapter(gone, retrain) == str(tmp_path / "again") and retrained == [1]


def test_stages_kept_in_the_results_folder_are_not_run_again(tmp_path, monkeypatch):
    import benchmarks.study.run as run

    p = Protocol(lrs=(1e-4, 3e-4), seeds=(0,))
    for lr, cfs in ((1e-4, [0, 1]), (3e-4, [1, 1])):
        (tmp_path / f"sweep_plain_lr{lr:g}.json").write_text(json.dumps(
            {"adapter": f"gone/{lr:g}", "seed": 0, "val": {"toolworld_val": _items(cfs)}}))
    (tmp_path / "test_plain_s0.json").write_text(json.dumps({"scores": {"toolworld_heldout": _items([1])}}))
    for name in ("val_set", "error_situations", "load_tokenizer"):
        monkeypatch.setattr(run, name, lambda *a, **k: None)
    monkeypatch.setattr(run, "test_sets", lambda *a, **k: {"toolworld_heldout": None})  # the kept stage has it
    monkeypatch.setattr(run, "train", lambda *a, **k: pytest.fail("a kept stage was trained again"))
    run.run_sft(["plain"], p, "ckpt", results=tmp_path, out=tmp_path / "runs")  # nothing left to run
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_set_added_after_a_test_stage_ran_is_scored_alone_and_merged_in(tmp_path, monkeypatch):
    import benchmarks.study.run as run

    kept = {"adapter": "a", "seed": 1, "stage_wall_s": 60.0, "scores": {"old": _items([1]), "mae_repeats": []}}
    (tmp_path / "test_plain_s1.json").write_text(json.dumps(kept))
    asked = []

    def score(checkpoint, adapter, sets, p, situations=()):
        asked.append((sorted(sets), situations))
        return {name: _items([0, 1]) for name in sets}

    monkeypatch.setattr(run, "score", score)
    monkeypatch.setattr(run, "ensure_adapter", lambda result, retrain: result["adapter"])
    sets = {"old": None, "new": None}
    done = run.test_stage(tmp_path, "test_plain_s1", {"adapter": "a"}, None, sets, "ckpt", Protocol(), ["mae"])
    assert asked == [(["new"], ())]  # only the new set, and not the MAE situations again
    assert list(done["scores"]) == ["old", "mae_repeats", "new"] and done["scores"]["old"] == _items([1])
    assert json.loads((tmp_path / "test_plain_s1.json").read_text()) == done and done["stage_wall_s"] >= 60.0
    run.test_stage(tmp_path, "test_plain_s1", {"adapter": "a"}, None, sets, "ckpt", Protocol(), ["mae"])
    assert len(asked) == 1  # nothing left to score


def test_a_set_is_reported_for_an_arm_once_every_seed_has_it(tmp_path):
    both = {"toolworld_heldout": _items([1, 0])}
    for variant, seed, extra in [("plain", 0, {"bfcl_simple": _items([0, 0])}), ("plain", 1, {}),
                                 ("mae", 0, {"bfcl_simple": _items([1, 0])})]:
        (tmp_path / f"test_{variant}_s{seed}.json").write_text(json.dumps({"scores": {**both, **extra}}))
    report = write_report(tmp_path, Protocol(seeds=(0, 1)))
    assert list(report["arms"]["plain"]) == ["toolworld_heldout"]  # seed 1 lacks bfcl_simple
    assert list(report["arms"]["mae"]) == ["toolworld_heldout", "bfcl_simple"]
    assert list(report["paired_vs_plain"]["mae"]) == ["toolworld_heldout"]


@pytest.mark.parametrize("part, kind", [("sft", "SFT"), ("rl", "RL")])
def test_seeds_outside_the_protocol_end_in_one_line(tmp_path, capsys, part, kind):
    from benchmarks.study.run import main

    with pytest.raises(SystemExit):
        main(["--part", part, "--seeds", "1", "7", "--out", str(tmp_path)])
    assert f"--seeds [7] are not among the protocol's {kind} seeds [0, 1, 2]" in capsys.readouterr().err
    assert not (tmp_path / "protocol.json").exists()  # refused before anything was written


@pytest.mark.parametrize("method", ["grpo", "ppo"])
def test_an_rl_seed_reseeds_what_it_samples_and_the_prompt_order(method):
    from pathlib import Path

    from benchmarks.study.protocol import rl_seed_settings
    from tl_lightning.cli.app import TLCLI

    configs = Path(__file__).resolve().parents[2] / "configs"
    cli = TLCLI(args=["--config", str(configs / "smollm2" / f"{method}.yaml"), "--config",
                      str(configs / "tiny_ppo.yaml"), *rl_seed_settings(2)], run=False)
    assert cli.model.hparams.rollout_seed == 2 and cli.datamodule.hparams.shuffle_seed == 2
    shipped = TLCLI(args=["--config", str(configs / "smollm2" / f"{method}.yaml"), "--config",
                          str(configs / "tiny_ppo.yaml"), *rl_seed_settings(0)], run=False)
    assert shipped.model.hparams.rollout_seed == 0 and shipped.datamodule.hparams.shuffle_seed == 0
