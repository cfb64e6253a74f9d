"""Which base precision trains SmolLM2-135M fastest on this CPU (issue #29)? A LoRA SFT step (forward, PKT loss,
backward, AdamW) on the same batch of ToolWorld conversations, NF4 base against a plain fp32 base (a 135M model
needs no 4-bit base: 0.5 GB in fp32), interleaved, medians and ranges; and the greedy forward of the same batch
(evaluation's prefill). bf16 compute is left out on purpose: this CPU has no native bf16 (a bf16 matmul ran at 9.6
GFLOP/s against 86 for fp32, docs/performance.md).

    OMP_NUM_THREADS=1 python -m benchmarks.train_precision [--steps 6] [--batch-size 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from benchmarks.real_model.run import CHECKPOINT
from tl_lightning.core.checkpoints import ensure_checkpoint
from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings, load_policy
from tl_lightning.models.pretrained import SmolLM2
from tl_lightning.objectives.weighted_ce import weighted_cross_entropy

OPTIONS = {"nf4": "nf4", "fp32": "none"}


def _batch(ckpt: str, batch_size: int) -> dict:
    dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(format="toolworld", size=16), val=DataSource(
        format="toolworld", split="val", size=2), max_length=1024, batch_size=batch_size)
    dm.setup()
    return next(iter(dm.train_dataloader()))


def _step(model, opt, batch) -> float:
    t = time.perf_counter()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    weighted_cross_entropy(logits, batch["labels"], batch["weights"]).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


@torch.no_grad()
def _forward(model, batch) -> float:
    t = time.perf_counter()
    model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False, logits_to_keep=1)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=2, help="configs/smollm2/sft.yaml's")
    a = ap.parse_args()
    ckpt = ensure_checkpoint(CHECKPOINT, SmolLM2())
    batch = _batch(ckpt, a.batch_size)
    models, opts = {}, {}
    for name, quant in OPTIONS.items():
        torch.manual_seed(0)
        lora = LoraSettings(r=16, alpha=32, dropout=0.0, target_modules="all-linear")  # configs/smollm2/sft.yaml's
        models[name] = load_policy(ModelSettings(checkpoint=ckpt, quantization=quant, compute_dtype="float32",
                                                 lora=lora))
        opts[name] = torch.optim.AdamW([p for p in models[name].parameters() if p.requires_grad], lr=1e-4)
    train = {n: [] for n in OPTIONS}
    infer = {n: [] for n in OPTIONS}
    for i in range(a.steps + 1):  # the first round warms up and is not counted
        for name in OPTIONS:
            models[name].train()
            s = _step(models[name], opts[name], batch)
            models[name].eval()
            f = _forward(models[name], batch)
            if i:
                train[name].append(s)
                infer[name].append(f)
    tokens = int(batch["attention_mask"].sum())

    def summary(times):
        return {"median_s": round(statistics.median(times), 3), "range_s": [round(min(times), 3), round(max(times), 3)],
                "tokens_per_s": round(tokens / statistics.median(times), 1)}

    out = {"batch_shape": list(batch["input_ids"].shape), "real_tokens": tokens, "threads": torch.get_num_threads(),
           "load_avg_1min": round(os.getloadavg()[0], 2),
           "train_step": {n: summary(t) for n, t in train.items()},
           "forward": {n: summary(t) for n, t in infer.items()},
           "fp32_over_nf4_train_speed": round(statistics.median(train["nf4"]) / statistics.median(train["fp32"]), 2),
           "fp32_over_nf4_forward_speed": round(statistics.median(infer["nf4"]) / statistics.median(infer["fp32"]), 2)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
