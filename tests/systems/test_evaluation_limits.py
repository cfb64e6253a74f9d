"""The eval smoke run's limits: prompts the model's positions cannot hold are skipped and counted, not decoded;
BFCL comes from a fallback folder when the bfcl-eval package is absent; missing benchmark files fail in one line."""

import importlib.util
import json
from types import SimpleNamespace

import lightning as L
import pytest
from helpers import FIXTURES, ScriptedModel

from tl_lightning.core.errors import DataError
from tl_lightning.data.benchmark_datamodule import BenchmarkDataModule, BenchmarkSource
from tl_lightning.models.engine import HFGenerate
from tl_lightning.models.loading import ModelSettings
from tl_lightning.systems.evaluation import EvalSystem

TOOLWORLD = BenchmarkSource("toolworld", "toolworld", "test", limit=12)


def test_prompts_longer_than_the_positions_are_skipped_and_counted(tiny_checkpoint, tmp_path):
    dm = BenchmarkDataModule(tokenizer=tiny_checkpoint, benchmarks=[TOOLWORLD], batch_size=4)
    dm.setup()
    lengths = sorted(len(i["input_ids"]) for i in dm.items)
    new_tokens = 8
    positions = lengths[len(lengths) // 2] + new_tokens  # the longer half does not fit
    too_long = sum(n + new_tokens > positions for n in lengths)
    assert 0 < too_long < len(lengths)
    system = EvalSystem(ModelSettings(checkpoint=tiny_checkpoint, quantization=None, lora=None),
                        output_dir=str(tmp_path), generation={"max_new_tokens": new_tokens}, engine=HFGenerate())
    model = ScriptedModel(dm.tok, lambda prompt: "finish(answer='ok')")
    model.config = SimpleNamespace(max_position_embeddings=positions)
    system.model = model
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(system, dm)
    summary = json.loads((tmp_path / "summary.json").read_text())["toolworld"]
    assert summary["skipped_too_long"] == too_long and summary["n"] == len(lengths) - too_long
    decoded = [json.loads(x) for x in (tmp_path / "predictions" / "toolworld.jsonl").read_text().splitlines()]
    assert len(decoded) == len(lengths) - too_long  # the skipped prompts never reached generate


def _bfcl(tokenizer: str = "unused", **kw) -> BenchmarkDataModule:
    return BenchmarkDataModule(tokenizer=tokenizer, benchmarks=[BenchmarkSource("bfcl/simple", "bfcl", "simple")],
                               **kw)


def test_bfcl_falls_back_to_a_folder_without_the_package(monkeypatch, tiny_checkpoint):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bfcl_eval" else
                        real_find_spec(name, *a))
    with pytest.raises(DataError, match="no BFCL data"):
        _bfcl().check_paths()
    dm = _bfcl(tiny_checkpoint, bfcl_fallback_dir=str(FIXTURES / "bfcl"))
    dm.check_paths()
    dm.setup()
    fixture = (FIXTURES / "bfcl" / "BFCL_v3_simple.json").read_text()
    ids = {i["conversation"].id for i in dm.items}  # the fixture's 2 good items (it also holds 2 bad ones)
    assert len(ids) == 2 and all(f'"id": "{x}"' in fixture or f'"id":"{x}"' in fixture for x in ids)


def test_bfcl_package_wins_over_the_fallback():
    if importlib.util.find_spec("bfcl_eval") is None:
        pytest.skip("bfcl-eval is not installed")
    assert _bfcl(bfcl_fallback_dir=str(FIXTURES / "bfcl"))._bfcl_dir() is None


def test_a_missing_benchmark_file_is_one_line(tmp_path):
    dm = BenchmarkDataModule(tokenizer="unused", root=str(tmp_path),
                             benchmarks=[BenchmarkSource("rotbench/clean", "rotbench", "rotbench/clean.json")])
    with pytest.raises(DataError, match=r"benchmark rotbench/clean: .*rotbench/clean.json not found"):
        dm.check_paths()
