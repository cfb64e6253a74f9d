"""Data parallelism on CPU: 2-process gloo DDP SFT follows the same loss trajectory as one process on the same
global batches, because the PKT weight normaliser is global (Note [weight normalisation] in weighted_ce.py)."""

import csv
import functools
from pathlib import Path

import lightning as L
import pytest
import torch

from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.systems.schedules import WarmupConstant
from tl_lightning.systems.sft import SFTSystem

CONSTANT = WarmupConstant  # no warmup, constant LR


def _fit(ckpt: str, root: Path, devices: int, per_device_batch: int) -> list[float]:
    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=4, alpha=8, dropout=0.0)),
                       # SGD, not Adam: Adam is invariant to gradient scale and would hide a normalisation error
                       optimizer=functools.partial(torch.optim.SGD, lr=2.0), lr_scheduler=CONSTANT)
    dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=16), val=DataSource(split="val", size=2),
                           max_length=900, batch_size=per_device_batch, shuffle=True, shuffle_seed=5)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        max_steps=3, logger=L.pytorch.loggers.CSVLogger(root, name="", version=""),
                        limit_val_batches=0, log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(system, dm)
    rows = list(csv.DictReader(open(root / "metrics.csv")))
    return [float(r["train/weighted_loss"]) for r in rows if r.get("train/weighted_loss")]


def test_ddp_two_processes_match_one(tiny_checkpoint, tmp_path):
    # global batch 4 = one process x 4 = two processes x 2; the datamodule's sampler gives both the same order
    single = _fit(tiny_checkpoint, tmp_path / "single", devices=1, per_device_batch=4)
    ddp = _fit(tiny_checkpoint, tmp_path / "ddp", devices=2, per_device_batch=2)
    assert len(single) == len(ddp) == 3
    assert single[2] < single[0]  # it trains
    assert ddp == pytest.approx(single, rel=1e-4)  # same objective at step 0, same updates after
