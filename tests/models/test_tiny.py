"""The tiny random Llama builder (`models.tiny`): building it leaves the run's random streams alone, so the first
run of a config (which builds the checkpoint) trains exactly as every later run that reuses it."""

import csv
import logging
import random
from pathlib import Path

import numpy as np
import torch
from helpers import ROOT

from main import cli_main
from tl_lightning.core.checkpoints import ensure_checkpoint
from tl_lightning.models.tiny import TinyLlama


def _global_rng_states() -> tuple:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].tolist()


def test_building_leaves_the_global_rng_untouched(tmp_path):
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    before = _global_rng_states()
    TinyLlama().build(tmp_path / "ckpt")
    after = _global_rng_states()
    assert torch.equal(before[0], after[0]) and before[1:] == after[1:]


def test_building_twice_writes_the_same_weights(tmp_path):
    """The weights come from the builder's own seed, whatever the global RNG held before."""
    torch.manual_seed(1)
    TinyLlama().build(tmp_path / "a")
    torch.manual_seed(2)
    TinyLlama().build(tmp_path / "b")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def _fit_losses(root: Path, checkpoint: Path) -> list[float]:
    cli_main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"),
              f"--model.init_args.policy.checkpoint={checkpoint}", f"--trainer.default_root_dir={root}",
              f"--trainer.logger.init_args.save_dir={root}", "--trainer.max_steps=3", "--trainer.log_every_n_steps=1",
              "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
              "--trainer.enable_checkpointing=false", "--trainer.enable_model_summary=false",
              "--trainer.enable_progress_bar=false", "--trainer.callbacks=[]", "--data.init_args.train.size=48",
              "--data.init_args.val.size=2", "--data.init_args.val_generation=0"])
    rows = list(csv.DictReader((root / "sft" / "version_0" / "metrics.csv").open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def test_first_run_that_builds_trains_as_a_later_run_that_reuses(tmp_path):
    checkpoint = tmp_path / "tiny-llama"  # missing: the first run builds it (policy.build), the second reuses it
    built = _fit_losses(tmp_path / "first", checkpoint)
    reused = _fit_losses(tmp_path / "second", checkpoint)
    assert len(built) == 3 and built == reused


def test_building_at_a_missing_path_says_so_in_one_warning_line(tmp_path, caplog):
    """A mistyped policy.checkpoint under a config with policy.build gets a new random model: the run says so."""
    typo = tmp_path / "tiny-lama"
    with caplog.at_level(logging.INFO, logger="tl_lightning"):
        ensure_checkpoint(str(typo), TinyLlama())
        ensure_checkpoint(str(typo), TinyLlama())  # built now: reused without a word
    said = [r for r in caplog.records if r.name == "tl_lightning.core.checkpoints"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert said[0].getMessage() == (f"building a new random TinyLlama (hidden 64, 2 layers, seed 0) at {typo}: no "
                                    "checkpoint there (policy.build). If you meant an existing checkpoint, fix "
                                    "policy.checkpoint")
