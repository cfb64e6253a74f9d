"""The real-model benchmark's choices and report (the run itself: `python -m benchmarks.real_model --quick`)."""

import json

from benchmarks.real_model.report import ERROR_GROUPS, STAGE_LABELS, write_report
from benchmarks.real_model.run import better_adapter, better_style
from benchmarks.real_model.stages import SET_NAMES, STYLES
from tl_lightning.rewards.taxonomy import CATEGORIES


def _metrics(ts: float, cf: float, reward: float, format_error: float = 0.0) -> dict:
    return {"ts": ts, "pi": cf, "cf": cf, "reward": reward, "rate/format_error": format_error, "items": 16}


def _sets(**overrides) -> dict:
    return {n: overrides.get(n, _metrics(0.0, 0.0, -2.0, 1.0)) for n in SET_NAMES}


def test_style_choice_by_cf_then_ts_then_reward_and_ties_go_to_the_template():
    paper, chat = _sets(toolworld_heldout=_metrics(0.5, 0.25, -1.0)), _sets(toolworld_heldout=_metrics(0.75, 0.25, -1))
    assert better_style({"paper": paper, "chat_template": chat}) == "chat_template"  # same CF, higher TS
    assert better_style({"paper": chat, "chat_template": paper}) == "paper"
    assert better_style({"paper": paper, "chat_template": paper}) == "chat_template"  # a full tie


def test_rl_starts_from_the_sft_adapter_with_the_higher_held_out_cf():
    results = {"plain": {"eval": _sets(toolworld_heldout=_metrics(0.7, 0.5, -0.2))},
               "mae_pkt": {"eval": _sets(toolworld_heldout=_metrics(0.6, 0.5, -0.1))}}
    assert better_adapter(results) == "mae_pkt"  # equal CF: the higher reward
    results["plain"]["eval"]["toolworld_heldout"]["cf"] = 0.56
    assert better_adapter(results) == "plain"


def test_error_groups_partition_the_error_categories():
    grouped = sorted(c for cats in ERROR_GROUPS.values() for c in cats)
    assert grouped == sorted(c for c in CATEGORIES if c != "correct")


def test_report_tables_carry_the_stage_numbers(tmp_path):
    run, docs = tmp_path / "run", tmp_path / "docs"
    run.mkdir()
    zero = {s: _sets() for s in STYLES}
    trained = _sets(toolworld_heldout=_metrics(0.6875, 0.5, -0.175))
    sft = {"train_loss": [2.0, 1.0, 0.5], "val_loss": [0.4], "trained_tokens": 4425, "mae_blocked_calls": 0,
           "wall_s": 60.0, "eval": trained}
    stages = {"convert": {}, "zero_shot": zero, "sft_plain": sft, "sft_mae_pkt": {**sft, "mae_blocked_calls": 15},
              "rl": {"start": "plain", "reward": [0.0, 1.0], "format_error": [0.125, 0.0], "wall_s": 120.0,
                     "eval": _sets(toolworld_heldout=_metrics(0.875, 0.6875, 0.29))},
              "ppo": {"start": "plain", "reward": [-0.5, -0.25], "format_error": [0.25, 0.125], "wall_s": 180.0,
                      "eval": _sets(toolworld_heldout=_metrics(0.75, 0.5625, 0.1))}}
    for name, result in stages.items():
        (run / f"{name}.json").write_text(json.dumps({**result, "stage_wall_s": 600.0}))
    (run / "run.json").write_text(json.dumps({"style": "chat_template", "rl_start": "plain", "scale": {"eval_items": 16,
                                  "max_prompt_tokens": 1024, "max_new_tokens": 64}}))
    (run / "eval_items.json").write_text(json.dumps({n: ["a"] * 16 for n in SET_NAMES}))
    md = write_report(run, docs, threads=1, quick=False)
    assert "| SFT plain | 69 / 50 / 50 | 0 / 0 / 0 | 0 / 0 / 0 | 0 / 0 / 0 | -0.17 |" in md
    assert "| SFT plain + GRPO | 88 / 69 / 69 |" in md
    assert "| SFT plain + PPO | 75 / 56 / 56 |" in md
    assert "| **total** | **60.0** |" in md and len(STAGE_LABELS) == 6
    assert "format-error rate 12, 0 %" in md and "PPO from SFT plain: 2 iterations" in md
    assert (docs / "real_model_first_run.png").stat().st_size > 10_000


def test_ppo_gets_grpos_rollout_budget():
    import yaml
    from helpers import ROOT

    from benchmarks.real_model.stages import GRPO_GROUP_SIZE

    grpo = yaml.safe_load((ROOT / "configs/smollm2/grpo.yaml").read_text())
    assert grpo["model"]["init_args"]["advantage"]["init_args"]["group_size"] == GRPO_GROUP_SIZE
