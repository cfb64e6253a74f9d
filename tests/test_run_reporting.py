"""What a run tells its user: plain progress lines when stdout is not a terminal, what a resume did (or why it had
nothing to do, still writing hf/final), and the `threads` setting."""

from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT
from safetensors.torch import load_file

from main import cli_main


def _fit(tmp_path: Path, tiny_checkpoint: str, *extra: str) -> None:
    cli_main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"),
              f"--model.init_args.policy.checkpoint={tiny_checkpoint}", f"--trainer.default_root_dir={tmp_path}",
              f"--trainer.logger.init_args.save_dir={tmp_path}", "--trainer.max_epochs=2",
              "--data.init_args.train.size=16", "--data.init_args.val.size=2", "--data.init_args.val_generation=0",
              "--trainer.enable_model_summary=false", *extra])


def test_progress_resume_and_threads(tiny_checkpoint, tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        _fit(tmp_path, tiny_checkpoint, "--threads=1")  # 16 conversations, batch 8: 2 steps an epoch
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out  # captured: not a terminal, so plain lines instead of the live bar
    assert "epoch 1/2  batch 2/2  train/loss" in out and "epoch 2 validation  val/" in out
    assert "\nTraining done.\n" in out
    run = tmp_path / "sft"
    assert sorted(p.name for p in (run / "version_0" / "checkpoints").iterdir()) == \
        ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt"]

    _fit(tmp_path, tiny_checkpoint, f"--ckpt_path={run / 'version_0' / 'checkpoints' / 'epoch=0-step=2.ckpt'}")
    out = capsys.readouterr().out
    assert "epoch=0-step=2.ckpt: epoch 1, step 2; training until max_epochs=2" in out
    assert "at step 2, trained steps 2-4." in out and "epoch 2/2  batch 2/2" in out
    assert (run / "version_1" / "hf" / "final" / "adapter_config.json").is_file()

    _fit(tmp_path, tiny_checkpoint, f"--ckpt_path={run / 'version_0' / 'checkpoints' / 'epoch=1-step=4.ckpt'}")
    out = capsys.readouterr().out
    assert "Nothing to train:" in out and "already at max_epochs=2" in out and "--trainer.max_epochs 4" in out
    assert (run / "version_2" / "hf" / "final" / "adapter_config.json").is_file()  # exported all the same

    _fit(tmp_path, tiny_checkpoint, f"--ckpt_path={run / 'version_0' / 'checkpoints' / 'epoch=1-step=4.ckpt'}",
         "--trainer.max_epochs=3")  # a finished run, extended: the schedule continues, the adapter moves
    assert "at step 4, trained steps 4-6." in capsys.readouterr().out
    before, after = (load_file(run / v / "hf" / "final" / "adapter_model.safetensors")
                     for v in ("version_0", "version_3"))
    assert any(not torch.equal(before[k], after[k]) for k in before)


CPU_CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.yaml")
                     if (yaml.safe_load(p.read_text()).get("trainer") or {}).get("accelerator") == "cpu")


@pytest.mark.parametrize("config", CPU_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cpu_config_sets_one_thread(config):
    """Run as written, a CPU config gets the one thread its measured times were taken with (torch's default, one
    thread per core, ran SmolLM2 SFT 2.3x slower on a shared 2-core machine)."""
    assert yaml.safe_load(config.read_text()).get("threads") == 1
