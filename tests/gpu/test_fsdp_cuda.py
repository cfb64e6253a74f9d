"""CUDA: QLoRA + FSDP through the shipped overlay (configs/strategies/fsdp.yaml: NF4 stored in bfloat16, one shard
unit per block). On 2+ GPUs the 2-process loss trajectory must follow the single-process one on the same global
batches; on one GPU, FSDP must train and export an adapter that reloads. torch's FSDP refuses CPU-only machines
("FSDP needs a non-CPU accelerator device"), so this cannot run in CI."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gpu


def _fit(ckpt: str, root: Path, devices: int, per_device_batch: int, fsdp: bool = True) -> Path:
    args = [sys.executable, "main.py", "fit", "--config", "configs/quickstart.yaml",
            "--config", "configs/strategies/fsdp.yaml", f"--model.init_args.policy.checkpoint={ckpt}",
            '--model.init_args.policy={"compute_dtype": "bfloat16"}', "--trainer.accelerator=cuda",
            "--trainer.precision=bf16-true",
            f"--trainer.devices={devices}", "--trainer.max_steps=3", "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--trainer.log_every_n_steps=1",
            f"--trainer.default_root_dir={root}",
            f"--trainer.logger.init_args.save_dir={root}", "--data.init_args.val_generation=0",
            # SGD, not Adam: Adam is invariant to gradient scale and would hide a reduction error
            "--model.init_args.optimizer.class_path=torch.optim.SGD", "--model.init_args.optimizer.init_args.lr=2.0",
            "--model.init_args.lr_scheduler=tl_lightning.systems.schedules.WarmupConstant",
            f"--data.init_args.train={json.dumps({'format': 'toolworld', 'size': 16, 'seed': 0})}",
            f"--data.init_args.batch_size={per_device_batch}", "--data.init_args.shuffle_seed=5",
            "--data.init_args.max_length=900"]
    if not fsdp:
        args.append("--trainer.strategy=auto")
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return next(root.glob("sft/version_*"))


def _losses(log_dir: Path) -> list[float]:
    rows = list(csv.DictReader(open(log_dir / "metrics.csv")))
    return [float(r["train/weighted_loss"]) for r in rows if r.get("train/weighted_loss")]


def test_fsdp_qlora_trains_and_exports(tiny_checkpoint, tmp_path):
    import torch

    gpus = min(2, torch.cuda.device_count())
    fsdp_dir = _fit(tiny_checkpoint, tmp_path / "fsdp", devices=gpus, per_device_batch=4 // gpus)
    fsdp = _losses(fsdp_dir)
    assert len(fsdp) == 3 and all(map(__import__("math").isfinite, fsdp))
    if gpus == 2:
        single = _losses(_fit(tiny_checkpoint, tmp_path / "single", devices=1, per_device_batch=4, fsdp=False))
        assert fsdp == pytest.approx(single, rel=1e-2)  # bf16

    from peft import PeftModel

    from tl_lightning.models.loading import ModelSettings, load_base_model

    base = load_base_model(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4", compute_dtype="bfloat16"),
                           device="cuda")
    model = PeftModel.from_pretrained(base, str(fsdp_dir / "hf" / "final"))
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)  # trained weights, gathered from the shards
