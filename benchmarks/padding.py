"""Batch layouts side by side, printed as JSON: padded (random order), length-grouped, and packed rows.

The same examples (one pass over `--examples` ToolWorld conversations, batch 8) go through the SFT system's real
loss + backward in each layout; layouts alternate and each is timed `--repeats` times (median). Reported: real tokens
per second, the share of padding positions, and the attention area Σ rows·T² (what dense SDPA pays for).

    python -m benchmarks.padding [--examples 96] [--repeats 3] [--capacity 2048]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from tl_lightning.data.collate import pack_sft_batch, pad_sft_batch
from tl_lightning.data.samplers import LengthGroupedSampler
from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.models.tiny import build_tiny_checkpoint
from tl_lightning.systems.sft import SFTSystem


def layouts(examples: list[dict], batch: int, pad_id: int, capacity: int, seed: int = 0) -> dict[str, list[dict]]:
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    random_batches = [[examples[i] for i in order[s:s + batch]] for s in range(0, len(order), batch)]
    grouped = list(LengthGroupedSampler([len(e["input_ids"]) for e in examples], batch, 1, 0, seed=seed))
    grouped_batches = [[examples[i] for i in grouped[s:s + batch]] for s in range(0, len(grouped), batch)]
    return {"padded": [pad_sft_batch(b, pad_id) for b in random_batches],
            "length_grouped": [pad_sft_batch(b, pad_id) for b in grouped_batches],
            "packed": [pack_sft_batch(b, pad_id, capacity) for b in random_batches]}


def shape_stats(batches: list[dict]) -> dict:
    positions = sum(b["input_ids"].numel() for b in batches)
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    area = sum(b["input_ids"].size(0) * b["input_ids"].size(1) ** 2 for b in batches)
    return {"rows": sum(b["input_ids"].size(0) for b in batches), "padding_share": round(1 - real / positions, 4),
            "attention_area_Mtok2": round(area / 1e6, 1), "real_tokens": real}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--capacity", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=64)
    a = ap.parse_args()
    L.seed_everything(0)
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny", hidden=a.hidden, layers=2))
        dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=a.examples), val=DataSource(split="val", size=2),
                               max_length=1024, batch_size=8)
        dm.setup()
        system = SFTSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                         lora=LoraSettings(r=8, dropout=0.0)))
        system.configure_model()
        sets = layouts(dm.datasets["train"], 8, dm.tok.pad_token_id, a.capacity)
        times: dict[str, list[float]] = {k: [] for k in sets}
        for r in range(a.repeats + 1):  # round 0 warms up
            for name, batches in sets.items():
                t = time.perf_counter()
                for b in batches:
                    system._losses(b)["weighted_loss"].backward()
                system.zero_grad(set_to_none=True)
                if r:
                    times[name].append(time.perf_counter() - t)
        out = {"machine": f"{torch.get_num_threads()} CPU threads",
               "model": f"tiny Llama h{a.hidden} L2, NF4 + LoRA r8",
               "examples": a.examples, "batch_size": 8, "pack_capacity": a.capacity}
        base = None
        for name, batches in sets.items():
            s = statistics.median(times[name])
            stats = shape_stats(batches)
            tps = stats["real_tokens"] / s
            base = base or tps
            out[name] = {**stats, "median_s": round(s, 2), "tokens_per_s": round(tps), "vs_padded": round(tps / base,
                                                                                                          3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
