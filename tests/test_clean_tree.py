"""Commands write only under their run directory: a short fit and an eval, run from an empty working directory
with the shipped configs, leave nothing outside `runs/`."""

import pytest
from helpers import ROOT, shared_data

from main import cli_main


def _files(cwd):
    return sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*") if p.is_file())


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch, tiny_checkpoint):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "tiny-llama").symlink_to(tiny_checkpoint)  # the configs' tiny model, already built
    return tmp_path


def test_fit_and_eval_write_only_under_runs(empty_cwd):
    data = shared_data()
    cli_main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--trainer.max_steps=2",
              "--trainer.limit_val_batches=1", "--data.init_args.train.size=8", "--data.init_args.val.size=2",
              "--data.init_args.val_generation=2", "--trainer.enable_progress_bar=false"])
    cli_main(["test", "--config", str(ROOT / "configs" / "eval" / "toolalpaca.yaml"), "--config",
              str(ROOT / "configs" / "eval" / "tiny.yaml"), f"--data.init_args.root={data}", "--data.init_args.limit=2",
              "--trainer.enable_progress_bar=false"])
    files = _files(empty_cwd)
    assert files and all(f.startswith("runs/") for f in files), [f for f in files if not f.startswith("runs/")]
    assert any(f.startswith("runs/quickstart/") and f.endswith("hf/final/adapter_config.json") for f in files)
    assert any(f.startswith("runs/eval_tiny/") and f.endswith("summary.md") for f in files)
