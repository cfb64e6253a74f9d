"""`python main.py test` pipeline: scripted models on the real benchmark files score exactly as expected; the tiny
checkpoint runs through all four benchmarks and writes the table and the plot."""

import json

import lightning as L
import pytest
from helpers import FIXTURES, SHARED_DATA, ScriptedModel, shared_data

from tl_lightning.core.errors import UserError
from tl_lightning.data.benchmark_datamodule import BenchmarkDataModule, BenchmarkSource
from tl_lightning.format.call_format import join_rendered, render_calls
from tl_lightning.format.schema import ToolCall
from tl_lightning.models.engine import HFGenerate
from tl_lightning.models.loading import ModelSettings
from tl_lightning.systems.evaluation import EvalSystem

ROTBENCH = [BenchmarkSource(f"rotbench/{t}/{lvl}", "rotbench", f"rotbench/Data/{t}/{lvl}.json")
            for t in ("First_Turn", "Third_Turn") for lvl in ("clean", "slight", "medium", "heavy", "union")]
TOOLALPACA = [BenchmarkSource("toolalpaca/eval_real", "toolalpaca", "toolalpaca/data/eval_real.json"),
              BenchmarkSource("toolalpaca/eval_simulated", "toolalpaca", "toolalpaca/data/eval_simulated.json")]
TOOLEYES = [BenchmarkSource("tooleyes", "tooleyes", "tooleyes/Test_Data/scenario_data_zero_processed.json")]
BFCL = [BenchmarkSource(f"bfcl/{c}", "bfcl", c, data_dir=str(FIXTURES / "bfcl"))
        for c in ("simple", "parallel", "irrelevance", "exec_simple")]


def _run(tokenizer_dir, sources, answer_fn, tmp_path, **dm_kw):
    shared_data()  # skip without ../shared/data
    dm = BenchmarkDataModule(tokenizer=tokenizer_dir, benchmarks=sources, root=str(SHARED_DATA), batch_size=16, **dm_kw)
    dm.setup()
    renderer = dm.renderer()
    def key(text):
        return text.replace("<s>", "").strip()

    by_prompt = {key(renderer.render(i["conversation"], add_generation_prompt=True).text): i["conversation"]
                 for i in dm.items}
    system = EvalSystem(ModelSettings(checkpoint=tokenizer_dir, quantization=None, lora=None), output_dir=str(tmp_path),
                        generation={"max_prompt_length": 100_000, "max_new_tokens": 100_000},
                        engine=HFGenerate())  # the scripted model answers through `generate`
    system.model = ScriptedModel(dm.tok, lambda prompt: answer_fn(by_prompt[key(prompt)]))
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(system, dm)
    return system.summary, dm


def _gold(conv):
    return join_rendered(render_calls(conv.gold[0])) if conv.gold else "finish(answer='ok')"


def test_gold_model_scores_100_on_real_benchmarks(tiny_checkpoint, tmp_path):
    lenient = [BenchmarkSource(**{**s.__dict__, "scoring": "lenient"}) for s in ROTBENCH]
    summary, dm = _run(tiny_checkpoint, lenient + TOOLALPACA + TOOLEYES + BFCL, _gold, tmp_path)
    assert {g: m["n"] for g, m in summary.items() if g.startswith(("toolalpaca", "tooleyes"))} == \
        {"toolalpaca/eval_real": 110, "toolalpaca/eval_simulated": 93, "tooleyes": 377}
    assert summary["rotbench/First_Turn/clean"]["n"] == 102 and summary["rotbench/Third_Turn/heavy"]["n"] == 134
    for group, m in summary.items():
        keys = ("format_valid", "tool_valid", "params_valid") if group == "tooleyes" else ("ts", "pi", "cf",
                                                                                           "exact_match")
        assert all(m[k] == 1.0 for k in keys), (group, m)
    md = (tmp_path / "summary.md").read_text()
    assert "## Robustness: RoTBench noise levels" in md and "| Third_Turn | 100.00 / 100.00 / 100.00" in md
    assert (tmp_path / "error_categories.png").stat().st_size > 1000
    lines = (tmp_path / "predictions" / "toolalpaca__eval_real.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) == 110 and {"id", "prompt_sha1", "output", "parsed", "category", "gold"} <= set(records[0])
    assert summary["bfcl/simple"]["scoring"] == "official (BFCL ast_checker)"
    assert summary["bfcl/exec_simple"]["scoring"] == summary["toolalpaca/eval_real"]["scoring"] == "lenient"
    assert "| rotbench/First_Turn/clean | lenient | 102 |" in md


def test_official_rotbench_scoring_is_the_default(tiny_checkpoint, tmp_path):
    """The gold answer in the paper's call format, scored by the official rules: RoTBench's evaluate.py cannot
    score the 7 loaded items whose gold arguments are {} (tests/metrics/test_rotbench_official.py checks every rule)."""
    summary, _ = _run(tiny_checkpoint, ROTBENCH[:1], _gold, tmp_path)
    m = summary["rotbench/First_Turn/clean"]
    assert m["scoring"] == "official (RoTBench evaluate.py)"
    assert m["ts"] == m["pi"] == m["cf"] == pytest.approx(95 / 102)
    assert m["rate/format_error"] == pytest.approx(7 / 102)
    md = (tmp_path / "summary.md").read_text()
    assert "| rotbench/First_Turn/clean | official (RoTBench evaluate.py) | 102 | 93.14 | 93.14 | 93.14 |" in md
    assert "scoring: official (RoTBench evaluate.py))" in md
    with pytest.raises(UserError, match="scoring 'official'"):
        BenchmarkDataModule(tokenizer=tiny_checkpoint, benchmarks=[{**TOOLALPACA[0].__dict__, "scoring": "official"}])


def _change_value(conv):
    call = conv.gold[0][0]
    if call.name in ("finish", "ask_to_user"):
        return _gold(conv)
    key = next((k for k, v in call.arguments.items() if v != "None"), None)
    if key is None:
        return _gold(conv)
    return join_rendered(render_calls((ToolCall(call.name, {**call.arguments, key: "zz changed"}),) + conv.gold[0][1:]))


def test_perturbing_model_drops_exactly_the_expected_metric(tiny_checkpoint, tmp_path):
    summary, dm = _run(tiny_checkpoint, [BenchmarkSource(**{**ROTBENCH[0].__dict__, "scoring": "lenient"})],
                       _change_value, tmp_path)
    m = summary["rotbench/First_Turn/clean"]
    changeable = sum(1 for i in dm.items if _change_value(i["conversation"]) != _gold(i["conversation"]))
    assert m["ts"] == m["pi"] == 1.0
    assert m["cf"] == pytest.approx(1 - changeable / 102)
    assert m["rate/content_filling"] == pytest.approx(changeable / 102)
    renamed, _ = _run(tiny_checkpoint, TOOLALPACA[:1], lambda c: _gold(c).replace("(", "_v9(", 1), tmp_path / "r")
    r = renamed["toolalpaca/eval_real"]
    assert r["ts"] == r["pi"] == r["cf"] == 0.0 and r["rate/tool_hallucination"] == 1.0


def test_tiny_checkpoint_runs_all_four_benchmarks(tiny_checkpoint, tmp_path):
    shared_data()
    sources = [BenchmarkSource(**{**s.__dict__, "limit": 6}) for s in (ROTBENCH[0], ROTBENCH[5], TOOLALPACA[0],
                                                                       TOOLEYES[0], BFCL[0])]
    dm = BenchmarkDataModule(tokenizer=tiny_checkpoint, benchmarks=sources, root=str(SHARED_DATA), batch_size=8)
    system = EvalSystem(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="float32",
                                      lora=None),
                        generation={"max_new_tokens": 16}, output_dir=str(tmp_path))
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).test(system, dm)
    assert set(system.summary) == {s.name for s in sources}
    assert all(m["n"] == (1 if g.startswith("bfcl") else 6) or g.startswith("bfcl") for g, m in system.summary.items())
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "error_categories.png").is_file()
    assert len(list((tmp_path / "predictions").glob("*.jsonl"))) == 5


def test_chat_template_prompt_style(tiny_checkpoint, tmp_path):
    summary, _ = _run(tiny_checkpoint, [BenchmarkSource(**{**ROTBENCH[0].__dict__, "limit": 20, "scoring": "lenient"})],
                      _gold, tmp_path, prompt_format="chat_template")
    assert summary["rotbench/First_Turn/clean"]["cf"] == 1.0
