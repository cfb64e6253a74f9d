"""SFT throughput and peak memory: tl-lightning vs TRL's SFTTrainer on the same job, side by side.

Same tiny NF4 checkpoint (loaded through the same from_pretrained path), same ToolWorld conversations rendered in
the paper format, LoRA r8 on all linear layers, batch size, max length, AdamW lr, fp32, no gradient
checkpointing, no packing. "ours" batches by length (the default, less padding); "ours_ungrouped" batches in
random order like TRL's default. Runs alternate (ours, ours_ungrouped, TRL, ...) in fresh subprocesses, so each
reports its own peak RSS; tokens/s counts non-padding tokens seen by the model's forward (one hook, both
frameworks) over the timed steps (warm-up steps excluded). Ours trains with PKT weights and MAE masks; TRL trains
plain CE on all tokens of the text: the forward/backward work is the same sequences.

    pip install -r benchmarks/requirements.txt -c constraints.txt      # TRL, for this benchmark only
    python -m benchmarks.trl_sft [--rounds 3] [--steps 30] [--batch 4] [--hidden 64 --layers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARMUP = 3


class StepClock:
    """Counts non-pad tokens entering the model and times steps after the warm-up."""

    def __init__(self) -> None:
        self.tokens = 0
        self.counting = False
        self.start = None
        self.steps = 0

    def hook(self, module, args, kwargs):
        mask = kwargs.get("attention_mask")
        if self.counting and mask is not None and module.training:
            self.tokens += int(mask.sum())

    def step_end(self) -> None:
        self.steps += 1
        if self.steps == WARMUP:
            self.counting, self.start = True, time.perf_counter()

    def result(self) -> dict:
        seconds = time.perf_counter() - self.start
        return {"tokens": self.tokens, "seconds": seconds, "tokens_per_s": self.tokens / seconds,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _texts(n: int) -> list[str]:
    from tl_lightning.data.sources import DataSource
    from tl_lightning.format.render import PaperFormat

    return [PaperFormat(eos_token="</s>").render(c).text for c in DataSource(size=n).load()[0]]


def run_ours(ckpt: str, steps: int, batch: int, max_length: int, group_by_length: bool = True) -> dict:
    import lightning as L
    import torch

    from tl_lightning.data.sft_datamodule import ToolSFTDataModule
    from tl_lightning.data.sources import DataSource
    from tl_lightning.models.loading import LoraSettings, ModelSettings
    from tl_lightning.systems.schedules import WarmupConstant
    from tl_lightning.systems.sft import SFTSystem

    clock = StepClock()

    class Clock(L.Callback):
        def on_train_start(self, trainer, pl_module):
            pl_module.model.register_forward_pre_hook(clock.hook, with_kwargs=True)

        def on_train_batch_end(self, *args):
            clock.step_end()

    L.seed_everything(0)
    system = SFTSystem(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                     lora=LoraSettings(r=8, alpha=16, dropout=0.0)),
                       optimizer=lambda p: torch.optim.AdamW(p, lr=2e-4), lr_scheduler=WarmupConstant)
    dm = ToolSFTDataModule(tokenizer=ckpt, train=DataSource(size=200), val=DataSource(split="val", size=2),
                           max_length=max_length, batch_size=batch, group_by_length=group_by_length)
    L.Trainer(accelerator="cpu", max_steps=steps + WARMUP, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
              callbacks=[Clock()]).fit(system, dm)
    return clock.result()


def run_trl(ckpt: str, steps: int, batch: int, max_length: int) -> dict:
    import datasets
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tl_lightning.checkpoints import load_tokenizer
    from tl_lightning.models.loading import ModelSettings, load_base_model

    clock = StepClock()

    class Clock(TrainerCallback):
        def on_step_end(self, *args, **kwargs):
            clock.step_end()

    model = load_base_model(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32"))
    tok = load_tokenizer(ckpt)
    with tempfile.TemporaryDirectory() as out:
        cfg = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_length=max_length,
                        max_steps=steps + WARMUP,
                        learning_rate=2e-4, lr_scheduler_type="constant", warmup_steps=0, logging_steps=1000,
                        save_strategy="no", report_to=[], use_cpu=True, bf16=False, fp16=False, packing=False,
                        gradient_checkpointing=False, dataset_text_field="text", seed=0, dataloader_num_workers=0)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=datasets.Dataset.from_dict({"text": _texts(200)}),
                             processing_class=tok,
                             peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                                    task_type="CAUSAL_LM"),
                             callbacks=[Clock()])
        trainer.model.register_forward_pre_hook(clock.hook, with_kwargs=True)
        trainer.train()
    return clock.result()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--worker", choices=["ours", "ours_ungrouped", "trl"])
    ap.add_argument("--ckpt")
    a = ap.parse_args()
    if a.worker:
        if a.worker == "trl":
            result = run_trl(a.ckpt, a.steps, a.batch, a.max_length)
        else:
            result = run_ours(a.ckpt, a.steps, a.batch, a.max_length, group_by_length=a.worker == "ours")
        print("RESULT " + json.dumps(result))
        return
    from tl_lightning.models.tiny import build_tiny_checkpoint

    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny", hidden=a.hidden, layers=a.layers))
        runs: dict[str, list[dict]] = {"ours": [], "ours_ungrouped": [], "trl": []}
        for _ in range(a.rounds):
            for name in runs:
                out = subprocess.run([sys.executable, "-m", "benchmarks.trl_sft", "--worker", name, "--ckpt", ckpt,
                                      "--steps", str(a.steps), "--batch", str(a.batch),
                                      "--max-length", str(a.max_length)],
                                     capture_output=True, text=True, check=True)
                line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
                runs[name].append(json.loads(line[len("RESULT "):]))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("tokens_per_s", "peak_rss_mb")}
           for n, rs in runs.items()}
    import trl

    print(json.dumps({"setup": {"model": f"Llama h{a.hidden} L{a.layers}, NF4 + LoRA r8 all-linear", "batch": a.batch,
                                "max_length": a.max_length, "timed_steps": a.steps, "rounds": a.rounds,
                                "trl": trl.__version__},
                      "median": {n: {k: round(v, 1) for k, v in m.items()} for n, m in med.items()},
                      "ours_over_trl_tokens_per_s": round(med["ours"]["tokens_per_s"] / med["trl"]["tokens_per_s"], 3),
                      "ours_ungrouped_over_trl_tokens_per_s": round(med["ours_ungrouped"]["tokens_per_s"] /
                                                                    med["trl"]["tokens_per_s"], 3),
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
