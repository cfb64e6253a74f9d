"""Callbacks: HF-format export of the trained adapter (+ tokenizer + resolved config) at each checkpoint and at
the end, so outputs load back with `PeftModel.from_pretrained` / `AutoTokenizer.from_pretrained`."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning as L

from tl_lightning.strategies import full_state_dict

log = logging.getLogger(__name__)


class HFExport(L.Callback):
    """Save `model` (a peft model: adapter only) + tokenizer + the run's config.yaml under `<log_dir>/hf/`.

    Args:
        dirname: sub-directory of the run's log dir.
        every_checkpoint: also export at every Lightning checkpoint save (as `step-N`), not only at the end.
    """

    def __init__(self, dirname: str = "hf", every_checkpoint: bool = True) -> None:
        self.dirname = dirname
        self.every_checkpoint = every_checkpoint
        self.final_dir: Path | None = None

    def _export(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> Path | None:
        if getattr(pl_module, "model", None) is None:
            return None
        state = full_state_dict(pl_module.model)  # FSDP: a collective every rank joins; None otherwise
        if not trainer.is_global_zero:
            return None
        out = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname / name
        out.mkdir(parents=True, exist_ok=True)
        # every adapter (PPO's "critic" goes to a sub-folder)
        pl_module.model.save_pretrained(out, **({"state_dict": state} if state is not None else {}))
        value_head = getattr(pl_module, "value_head", None)
        if value_head is not None:  # PPO: the value head travels with the adapters
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()},
                      str(out / "value_head.safetensors"))
        tok = getattr(pl_module, "tokenizer", None)
        if tok is not None:
            tok.save_pretrained(out)
        cfg = Path(trainer.log_dir or "") / "config.yaml"
        if cfg.is_file():
            shutil.copy(cfg, out / "config.yaml")
        return out

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.every_checkpoint:
            self._export(trainer, pl_module, f"step-{trainer.global_step}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final_dir = self._export(trainer, pl_module, "final")
        if self.final_dir is not None:
            logs = Path(trainer.log_dir or trainer.default_root_dir)
            msg = (f"\nTraining done.\n  adapter + tokenizer + config: {self.final_dir}\n"
                   f"  logs (metrics.csv, config.yaml, data_stats.json): {logs}\n"
                   f"  Lightning checkpoints: {logs / 'checkpoints'}\n")
            print(msg)


class SampleLogger(L.Callback):
    """Append each PPO iteration's sampled responses (prompt id, response, category, reward) to
    `<log_dir>/samples.jsonl`, every `every_n` iterations; reads `pl_module.last_samples`."""

    def __init__(self, every_n: int = 1, max_per_iteration: int = 4) -> None:
        self.every_n, self.max_per_iteration = every_n, max_per_iteration

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        samples = getattr(pl_module, "last_samples", None)
        if not trainer.is_global_zero or not samples or batch_idx % self.every_n:
            return
        import json

        path = Path(trainer.log_dir or trainer.default_root_dir) / "samples.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            for s in samples[: self.max_per_iteration]:
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
