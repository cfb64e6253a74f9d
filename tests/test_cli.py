"""The command line: user mistakes end in one `error:` line (exit code 2), and `--help` shows the field docs."""

import subprocess
import sys

import pytest
import torch
from helpers import ROOT


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_cli_user_errors_are_one_line(tiny_checkpoint, tmp_path):
    base = ["fit", "--config", "configs/quickstart.yaml", f"--model.init_args.policy.checkpoint={tiny_checkpoint}",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.logger=false", "--trainer.max_steps=1"]
    r = _cli(*base, "--data.init_args.train.format=conversations", "--data.init_args.train.path=/no/such.json")
    expected = "error: data path not found: /no/such.json (check the path in your config)"
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == expected
    r = _cli(*base, "--data.init_args.train.sizee=3")
    assert r.returncode == 2 and "sizee" in r.stderr
    r = _cli(*base, "--model.init_args.policy.checkpoint=./missing-model", '--model.init_args.policy={"build": null}')
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("error: model checkpoint not found: ./missing-model")
    if not torch.cuda.is_available():
        r = _cli(*base, "--trainer.accelerator=gpu")
        assert r.returncode == 2 and "CUDA is not available" in r.stderr.strip().splitlines()[-1]


def _help(capsys, *args: str) -> str:
    from main import cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(list(args))
    assert e.value.code in (0, None)
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare on one line


def test_help_shows_field_docs_for_short_class_names(capsys):
    out = _help(capsys, "fit", "--model.help", "SFTSystem")
    assert "A hub id or a local directory saved with `save_pretrained`" in out  # ModelSettings.checkpoint
    out = _help(capsys, "fit", "--data.help", "ToolSFTDataModule")
    assert "Which tool outputs are errors" in out  # MAESettings.detector
    assert "Use at most this many conversations" in out  # DataSource.limit
    out = _help(capsys, "fit", "--model.help", "PPOSystem")
    assert "How β moves" in out and "Policy ratio clip ε" in out  # KLSettings.controller, PPOSettings.clip
