"""The command line: user mistakes end in one `error:` line (exit code 2), and `--help` shows the field docs."""

import subprocess
import sys

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
