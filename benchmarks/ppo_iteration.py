"""PPO iteration time split (generate / score / reference + value / update) on CPU, and the ratio of one PPO
iteration to (generation + one forward-backward) on the same batch (target <= 1.5), side by side in one process.

    python -m benchmarks.ppo_iteration [--iterations 6] [--batch 8] [--new-tokens 32]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from tl_lightning.data.prompt_datamodule import ToolPromptDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.models.tiny import build_tiny_checkpoint
from tl_lightning.systems.critics import SharedCritic
from tl_lightning.systems.ppo import PPOSystem
from tl_lightning.systems.schedules import WarmupConstant


def baseline(system: PPOSystem, batch, reps: int) -> dict:
    """Generation + one forward-backward of the policy on the generated sequences: the floor for any PPO step."""
    gen, fb = [], []
    for i in range(reps):
        t = time.perf_counter()
        rollout = system._sample(batch)
        gen.append(time.perf_counter() - t)
        system.model.train()
        t = time.perf_counter()
        system.runner.forward(rollout, "default", head=True).logp.sum().backward()
        system.model.zero_grad(set_to_none=True)
        fb.append(time.perf_counter() - t)
    return {"generate_s": statistics.median(gen), "forward_backward_s": statistics.median(fb)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny"))
        gen = GenerationSettings(max_new_tokens=a.new_tokens, do_sample=True)
        system = PPOSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                         lora=LoraSettings(r=8, dropout=0.0)), critic=SharedCritic(), generation=gen,
                           ppo={"ppo_epochs": 1, "minibatch_size": a.batch}, lr_scheduler=WarmupConstant)
        dm = ToolPromptDataModule(tokenizer=ckpt, source=DataSource(size=100), batch_size=a.batch)
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=a.iterations,
                            logger=L.pytorch.loggers.CSVLogger(d),
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                            log_every_n_steps=1)
        t = time.perf_counter()
        trainer.fit(system, dm)
        wall = (time.perf_counter() - t) / a.iterations
        rows = [r for r in csv.DictReader(open(Path(trainer.log_dir) / "metrics.csv")) if r.get("time/rollout")][1:]
        split = {k: statistics.median(float(r[f"time/{k}"]) for r in rows) for k in ("rollout", "score", "ref_value",
                                                                                     "update")}
        iteration = sum(split.values())
        base = baseline(system, next(iter(dm.train_dataloader())), reps=3)
        floor = base["generate_s"] + base["forward_backward_s"]
        print(json.dumps({"machine": f"CPU, {torch.get_num_threads()} threads",
                          "model": "tiny Llama h64 L2, NF4 + LoRA r8",
                          "batch": a.batch, "new_tokens": a.new_tokens, "ppo_epochs": 1, "minibatches": 1,
                          "iteration_split_s": {k: round(v, 4) for k, v in split.items()},
                          "iteration_s": round(iteration, 4), "iteration_wall_s_incl_lightning": round(wall, 4),
                          "baseline_s": {k: round(v, 4) for k, v in base.items()},
                          "ratio_iteration_over_generate_plus_fwd_bwd": round(iteration / floor, 3)}, indent=1))


if __name__ == "__main__":
    main()
