"""The command line: each user mistake ends in one `error:` line (exit code 2) within seconds, and `--help` shows
the field docs."""

import os
import subprocess
import sys
import time

import pytest
import torch
from helpers import ROOT


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


QUICKSTART = ["fit", "--config", "configs/quickstart.yaml"]
EVAL_TINY = ["test", "--config", "configs/eval/all.yaml", "--config", "configs/eval/tiny.yaml"]
NO_BUILD = '--model.init_args.policy={"build": null}'
MISTAKES = {  # command-line arguments after the config -> the one line expected (a prefix of it)
    "unknown top-level key": (QUICKSTART + ["--trainer.max_epochz=3"],
                              "error: unknown config key 'trainer.max_epochz': did you mean 'trainer.max_epochs'?"),
    "unknown nested key": (QUICKSTART + ["--data.init_args.train.sizee=3"],
                           "error: unknown config key 'data.init_args.train.sizee': did you mean 'size'?"),
    "unknown key in a component": (QUICKSTART + ["--model.init_args.optimizer.init_args.lrr=0.1"],
                                   "error: unknown config key 'model.init_args.optimizer.init_args.lrr': did you "
                                   "mean 'lr'?"),
    "bad value": (QUICKSTART + ["--model.init_args.policy.quantization=nf5"],
                  "error: invalid value for 'model.init_args.policy.quantization': expected one of 'nf4', 'int8'"),
    "mistyped local model directory": (QUICKSTART + ["--model.init_args.policy.checkpoint=runs/tiny-lama", NO_BUILD],
                                       "error: model checkpoint not found: runs/tiny-lama"),
    "mistyped adapter directory": (["fit", "--config", "configs/ppo_quickstart.yaml",
                                    "--model.init_args.policy.checkpoint={tiny}",
                                    "--model.init_args.policy.adapter=runs/no-such-run/hf/final"],
                                   "error: adapter directory not found: runs/no-such-run/hf/final"),
    "missing data file": (QUICKSTART + ["--data.init_args.train.format=conversations",
                                        "--data.init_args.train.path=/no/such.json"],
                          "error: data path not found: /no/such.json (check the path in your config)"),
    "missing benchmark folder": (EVAL_TINY + ["--data.init_args.root=/no/such/data"],
                                 "error: benchmark rotbench/First_Turn/clean: /no/such/data/rotbench"),
    "missing checkpoint to resume": (QUICKSTART + ["--ckpt_path=runs/no-such-run/checkpoints/epoch=3-step=200.ckpt"],
                                     "error: checkpoint not found: runs/no-such-run/checkpoints/epoch=3-step=200.ckpt"),
    "GPU requested without CUDA": (QUICKSTART + ["--trainer.accelerator=gpu"],
                                   "error: a GPU accelerator was requested but CUDA is not available"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_is_one_line_exit_2_within_seconds(mistake, tiny_checkpoint, tmp_path):
    """Exactly one stderr line, before Lightning's start-up lines, and no model load: the time is the import of
    torch + Lightning + transformers (about 5 s on an idle 2-core machine; the bound allows for a busy one)."""
    args, expected = MISTAKES[mistake]
    if mistake.startswith("GPU") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    t0 = time.monotonic()
    r = _cli(*[a.replace("{tiny}", tiny_checkpoint) for a in args], f"--trainer.default_root_dir={tmp_path}")
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(expected), r.stderr[-2000:]
    assert took < 45, f"{took:.0f} s"


def test_uncached_hub_id_without_offline_mode_is_one_line_within_seconds(tmp_path):
    """HF_HUB_OFFLINE unset (a new user's shell): the hub client used to retry for 52 s and print 46 lines first."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # a closed loopback port: no traffic leaves this machine
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "main.py", *QUICKSTART, NO_BUILD, f"--trainer.default_root_dir={tmp_path}",
                        "--model.init_args.policy.checkpoint=tl-lightning-tests/no-such-model"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr[-2000:]
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: model checkpoint not found: "
                                                                   "'tl-lightning-tests/no-such-model'"), r.stderr
    assert took < 45, f"{took:.0f} s"


def _help(capsys, *args: str) -> str:
    from main import cli_main

    with pytest.raises(SystemExit) as e:
        cli_main(list(args))
    assert e.value.code in (0, None)
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare on one line


def test_help_shows_field_docs_for_short_class_names(capsys):
    assert "`--model.help SFTSystem`" in _help(capsys, "fit", "--help")  # `fit --help` points to them
    out = _help(capsys, "fit", "--model.help", "SFTSystem")
    assert "A hub id or a local directory saved with `save_pretrained`" in out  # ModelSettings.checkpoint
    out = _help(capsys, "fit", "--data.help", "ToolSFTDataModule")
    assert "Which tool outputs are errors" in out  # MAESettings.detector
    assert "Use at most this many conversations" in out  # DataSource.limit
    out = _help(capsys, "fit", "--model.help", "PPOSystem")
    assert "How β moves" in out and "Policy ratio clip ε" in out  # KLSettings.controller, PPOSettings.clip
