"""Does `policy.compile` (torch.compile of each decoder layer) help? Printed as JSON.

Two copies of the same tiny model, one compiled, take alternating SFT steps (forward + PKT loss + backward + AdamW)
on the same length-grouped batches; the first steps (compilation, warm-up) are reported apart. Run for NF4 + LoRA
and for full-precision + LoRA. Also checks that both copies compute the same loss.

    python -m benchmarks.compile [--steps 12] [--hidden 64] [--layers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch

from tl_lightning.data.sft_datamodule import ToolSFTDataModule
from tl_lightning.data.sources import DataSource
from tl_lightning.models.loading import LoraSettings, ModelSettings
from tl_lightning.models.tiny import build_tiny_checkpoint
from tl_lightning.systems.sft import SFTSystem


def _system(settings: ModelSettings) -> tuple[SFTSystem, torch.optim.Optimizer]:
    L.seed_everything(0)
    system = SFTSystem(settings)
    system.configure_model()
    return system, torch.optim.AdamW([p for p in system.parameters() if p.requires_grad], lr=1e-4)


def compare(settings: ModelSettings, batches: list[dict], steps: int) -> dict:
    runs = {"eager": _system(settings)}
    try:
        runs["compiled"] = _system(replace(settings, compile=True))
    except Exception as e:  # noqa: BLE001 - a failure to compile is a result to report
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    times: dict[str, list[float]] = {k: [] for k in runs}
    first: dict[str, float] = {}
    losses: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(steps + 3):
        batch = batches[i % len(batches)]
        for name, (system, opt) in runs.items():
            t = time.perf_counter()
            try:
                loss = system._losses(batch)["weighted_loss"]
                loss.backward()
            except Exception as e:  # noqa: BLE001
                return {"error": f"{name}: {type(e).__name__}: {str(e).splitlines()[0]}"}
            opt.step()
            opt.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t
            losses[name].append(loss.item())
            if i < 3:
                first[name] = first.get(name, 0.0) + dt
            else:
                times[name].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_step_s": {k: round(v, 4) for k, v in med.items()},
            "first_3_steps_s": {k: round(v, 2) for k, v in first.items()},
            "compiled_speedup": round(med["eager"] / med["compiled"], 3),
            "max_loss_diff": round(max(abs(a - b) for a, b in zip(losses["eager"], losses["compiled"])), 6)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny", hidden=a.hidden, layers=a.layers))
        dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=32), val=DataSource(split="val", size=2),
                               max_length=1024, batch_size=4)
        dm.setup()
        batches = list(dm.train_dataloader())
        lora = LoraSettings(r=8, dropout=0.0)
        out = {"machine": f"{torch.get_num_threads()} CPU threads", "torch": torch.__version__,
               "model": f"tiny Llama h{a.hidden} L{a.layers} + LoRA r8, batch 4 (length-grouped ToolWorld)"}
        for name, quant in (("nf4", "nf4"), ("full_precision", None)):
            out[name] = compare(ModelSettings(checkpoint=ckpt, quantization=quant, compute_dtype="float32", lora=lora),
                                batches, a.steps)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
