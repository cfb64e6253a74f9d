"""PPO iteration time split (generate / score / reference + value / update) on CPU, and the ratio of each PPO
iteration to the floor any PPO step pays on the same batch: generation + one forward-backward of the policy.

The floor is timed right after each iteration, on that iteration's prompts (same sampling settings and seed), so
both sides see the same prompts, the same policy weights and the same machine load; the ratio is reported per
iteration (the first, warm-up, excluded) as a median with its range.

    python -m benchmarks.ppo_iteration [--iterations 8] [--batch 8] [--new-tokens 32]
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


class FloorAfterEachIteration(L.Callback):
    """After each PPO iteration: generation + one forward-backward of the policy on the iteration's own prompts."""

    def __init__(self) -> None:
        self.floors: list[dict] = []

    def on_train_batch_end(self, trainer, system: PPOSystem, outputs, batch, batch_idx: int) -> None:
        batch = batch.repeat_each(system.advantage.group_size)
        seed = system.hparams.rollout_seed * 1_000_003 + system.iteration - 1  # the iteration's sampling seed
        t = time.perf_counter()
        rollout = system.runner.sample(batch, seed, system.device)
        gen = time.perf_counter() - t
        system.model.train()
        t = time.perf_counter()
        system.runner.forward(rollout, "default", head=True).logp.sum().backward()
        fb = time.perf_counter() - t
        system.model.zero_grad(set_to_none=True)
        self.floors.append({"generate_s": gen, "forward_backward_s": fb})


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=8)
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
        floor = FloorAfterEachIteration()
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=a.iterations,
                            logger=L.pytorch.loggers.CSVLogger(d), callbacks=[floor],
                            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                            log_every_n_steps=1)
        trainer.fit(system, dm)
        rows = [r for r in csv.DictReader(open(Path(trainer.log_dir) / "metrics.csv")) if r.get("time/rollout")]
        splits = [{k: float(r[f"time/{k}"]) for k in ("rollout", "score", "ref_value", "update")} for r in rows]
        pairs = list(zip(splits, floor.floors))[1:]  # the first iteration warms up
        ratios = [sum(s.values()) / (f["generate_s"] + f["forward_backward_s"]) for s, f in pairs]
        print(json.dumps({"machine": f"CPU, {torch.get_num_threads()} threads",
                          "model": "tiny Llama h64 L2, NF4 + LoRA r8",
                          "batch": a.batch, "new_tokens": a.new_tokens, "ppo_epochs": 1, "minibatches": 1,
                          "iterations_timed": len(pairs),
                          "iteration_split_s": {k: _spread([s[k] for s, _ in pairs]) for k in pairs[0][0]},
                          "iteration_s": _spread([sum(s.values()) for s, _ in pairs]),
                          "floor_s": {k: _spread([f[k] for _, f in pairs]) for k in pairs[0][1]},
                          "ratio_iteration_over_generate_plus_fwd_bwd": _spread(ratios),
                          "ratios": [round(x, 3) for x in ratios]}, indent=1))


if __name__ == "__main__":
    main()
