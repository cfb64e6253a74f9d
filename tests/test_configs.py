"""Every shipped config parses against the real classes, alone (validated by --print_config, which builds
nothing, so GPU configs pass on CPU) and composed with the tiny overlay (fully instantiated, no training)."""

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from main import cli_main
from tl_lightning.cli import TLCLI

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yaml") if p.name != "tiny.yaml")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_validates_alone(config):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert e.value.code in (0, None)
    resolved = yaml.safe_load(out.getvalue())
    assert resolved["model"]["class_path"].startswith("tl_lightning.")
    assert "tokenizer" not in resolved["data"]["init_args"]  # linked from the policy checkpoint, never written twice


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_with_tiny_overlay_instantiates(config):
    cli = TLCLI(args=["--config", str(config), "--config", str(config.parent / "tiny.yaml")], run=False)
    assert cli.model.policy_settings.checkpoint == "runs/tiny-llama"
    assert cli.trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    assert cli.datamodule.train_source.format == "toolworld"
    assert cli.datamodule.hparams.tokenizer == cli.model.policy_settings.checkpoint  # linked, written once
