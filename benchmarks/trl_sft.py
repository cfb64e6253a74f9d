"""SFT throughput and peak memory: tl-lightning vs TRL's SFTTrainer on the same job, like for like.

Same tiny NF4 checkpoint (loaded through the same from_pretrained path), LoRA r8 on all linear layers, batch size,
AdamW lr, fp32, no gradient checkpointing, no packing, and the *same token sequences*: TRL gets the input ids our
datamodule encodes from the ToolWorld conversations (paper format, cut at max_length), as a pre-tokenized dataset.
Each side trains two epochs over them and times the whole second epoch, so both time exactly the same tokens
(checked: `same_tokens`). Batch order is compared like for like: "ours" and "trl" both batch by length (ours by
default; TRL with `train_sampling_strategy="group_by_length"`), "ours_ungrouped" and "trl_ungrouped" both in
random order. Ours trains with PKT weights and MAE masks, TRL plain CE on all tokens: the forward/backward work
is the same. Runs alternate (ours, trl, ours_ungrouped, trl_ungrouped, then the next round) in fresh subprocesses
with one torch thread each (the README's thread policy), so each reports its own peak RSS; results are medians
over the rounds with their range.

    pip install -r benchmarks/requirements.txt -c constraints.txt      # TRL, for this benchmark only
    python -m benchmarks.trl_sft [--rounds 3] [--examples 120] [--batch 4] [--hidden 64 --layers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKERS = ("ours", "trl", "ours_ungrouped", "trl_ungrouped")


class EpochClock:
    """Counts the non-pad tokens entering the model's forward, and the time, during the second epoch only."""

    def __init__(self) -> None:
        self.tokens, self.counting, self.start, self.seconds = 0, False, 0.0, 0.0

    def hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if self.counting and module.training:
            self.tokens += int(mask.sum()) if mask is not None else kwargs["input_ids"].numel()

    def epoch_start(self, epoch: int) -> None:
        if epoch == 1:
            self.counting, self.start = True, time.perf_counter()

    def epoch_end(self, epoch: int) -> None:
        if epoch == 1:
            self.counting, self.seconds = False, time.perf_counter() - self.start

    def result(self) -> dict:
        return {"tokens": self.tokens, "seconds": self.seconds, "tokens_per_s": self.tokens / self.seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _datamodule(ckpt: str, examples: int, batch: int, max_length: int, group_by_length: bool = True):
    from tl_lightning.data.sft_datamodule import ToolSFTDataModule
    from tl_lightning.data.sources import DataSource

    return ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=examples), val=DataSource(split="val", size=2),
                             max_length=max_length, batch_size=batch, group_by_length=group_by_length)


def run_ours(ckpt: str, examples: int, batch: int, max_length: int, group_by_length: bool) -> dict:
    import lightning as L
    import torch

    from tl_lightning.models.loading import LoraSettings, ModelSettings
    from tl_lightning.systems.schedules import WarmupConstant
    from tl_lightning.systems.sft import SFTSystem

    clock = EpochClock()

    class Clock(L.Callback):
        def on_train_start(self, trainer, pl_module):
            pl_module.model.register_forward_pre_hook(clock.hook, with_kwargs=True)

        def on_train_epoch_start(self, trainer, pl_module):
            clock.epoch_start(trainer.current_epoch)

        def on_train_epoch_end(self, trainer, pl_module):
            clock.epoch_end(trainer.current_epoch)

    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=8, alpha=16, dropout=0.0)),
                       optimizer=lambda p: torch.optim.AdamW(p, lr=2e-4), lr_scheduler=WarmupConstant)
    with tempfile.TemporaryDirectory() as root:  # the run's data_stats.json goes there, not into the working dir
        L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[Clock()],
                  default_root_dir=root).fit(system, _datamodule(ckpt, examples, batch, max_length, group_by_length))
    return clock.result()


def run_trl(ckpt: str, examples: int, batch: int, max_length: int, group_by_length: bool) -> dict:
    import datasets
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tl_lightning.core.checkpoints import load_tokenizer
    from tl_lightning.models.loading import ModelSettings, load_base_model

    clock = EpochClock()
    epochs = []

    class Clock(TrainerCallback):
        def on_epoch_begin(self, *args, **kwargs):
            epochs.append(len(epochs))
            clock.epoch_start(epochs[-1])

        def on_epoch_end(self, *args, **kwargs):
            clock.epoch_end(epochs[-1])

    dm = _datamodule(ckpt, examples, batch, max_length)
    dm.setup()  # the token sequences ours trains on, given to TRL pre-tokenized
    ids = datasets.Dataset.from_dict({"input_ids": [ex["input_ids"] for ex in dm.datasets["train"]]})
    model = load_base_model(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32"))
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_length=max_length, num_train_epochs=2,
                        learning_rate=2e-4, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1000,
                        save_strategy="no", report_to=[], use_cpu=True, bf16=False, fp16=False, packing=False,
                        gradient_checkpointing=False, seed=0, dataloader_num_workers=0,
                        train_sampling_strategy="group_by_length" if group_by_length else "random")
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ids, processing_class=load_tokenizer(ckpt),
                             peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                                    task_type="CAUSAL_LM"),
                             callbacks=[Clock()])
        trainer.model.register_forward_pre_hook(clock.hook, with_kwargs=True)
        trainer.train()
    return clock.result()


def _spread(values: list[float], digits: int = 1) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--examples", type=int, default=120)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--worker", choices=WORKERS)
    ap.add_argument("--ckpt")
    a = ap.parse_args()
    if a.worker:
        run = run_trl if a.worker.startswith("trl") else run_ours
        result = run(a.ckpt, a.examples, a.batch, a.max_length, group_by_length=not a.worker.endswith("ungrouped"))
        print("RESULT " + json.dumps(result))
        return
    from tl_lightning.models.tiny import build_tiny_checkpoint

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny", hidden=a.hidden, layers=a.layers))
        runs: dict[str, list[dict]] = {name: [] for name in WORKERS}
        for _ in range(a.rounds):
            for name in WORKERS:
                out = subprocess.run([sys.executable, "-m", "benchmarks.trl_sft", "--worker", name, "--ckpt", ckpt,
                                      "--examples", str(a.examples), "--batch", str(a.batch),
                                      "--max-length", str(a.max_length)],
                                     capture_output=True, text=True, check=True, env=env)
                line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
                runs[name].append(json.loads(line[len("RESULT "):]))
    import trl

    def ratios(a: str, b: str) -> dict:  # per round: the two sides ran back to back
        return _spread([x["tokens_per_s"] / y["tokens_per_s"] for x, y in zip(runs[a], runs[b])], 3)

    print(json.dumps({"setup": {"model": f"Llama h{a.hidden} L{a.layers}, NF4 + LoRA r8 all-linear", "batch": a.batch,
                                "max_length": a.max_length, "examples": a.examples, "timed": "the second epoch",
                                "rounds": a.rounds, "threads": 1, "trl": trl.__version__},
                      "same_tokens": len({r["tokens"] for rs in runs.values() for r in rs}) == 1,
                      "tokens_per_s": {n: _spread([r["tokens_per_s"] for r in rs]) for n, rs in runs.items()},
                      "peak_rss_mb": {n: _spread([r["peak_rss_mb"] for r in rs]) for n, rs in runs.items()},
                      "ours_over_trl_grouped": ratios("ours", "trl"),
                      "ours_over_trl_ungrouped": ratios("ours_ungrouped", "trl_ungrouped"),
                      "length_grouping_speedup_ours": ratios("ours", "ours_ungrouped"),
                      "length_grouping_speedup_trl": ratios("trl", "trl_ungrouped"),
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
