"""`SFTSystem`: weighted-token SFT (MAE masks + PKT weights come with the batch) on a 4-bit/8-bit/full base + LoRA."""

from __future__ import annotations

import math
import time
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.cli import OptimizerCallable

from tl_lightning.constants import IGNORE_INDEX
from tl_lightning.errors import as_dataclass, to_plain
from tl_lightning.evaluation.predict import predict
from tl_lightning.metrics.tool_call import ToolCallMetrics
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_policy
from tl_lightning.objectives.weighted_ce import label_weights, token_cross_entropy, weighted_cross_entropy


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup from 0 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class SFTSystem(L.LightningModule):
    """Weighted-token SFT of a tool-calling policy.

    Args:
        policy: what to load (checkpoint, quantization, LoRA, gradient checkpointing).
        optimizer: optimizer factory (default AdamW, lr 2e-4, betas (0.9, 0.95), weight decay 0.01).
        warmup_ratio: share of the total steps used for linear warmup.
        schedule: "cosine" (decay to 0 after warmup) or "constant" (after warmup).
        val_generation: at each validation, greedily decode this many validation step prompts and log TS / PI / CF
            and error-category rates (`val/ts`, `val/rate/<category>`); 0 turns it off.
        generation: decoding settings for `val_generation`.
    """

    def __init__(self, policy: ModelSettings = ModelSettings(), optimizer: OptimizerCallable | None = None,
                 warmup_ratio: float = 0.03, schedule: Literal["cosine", "constant"] = "cosine",
                 val_generation: int = 0, generation: GenerationSettings = GenerationSettings(max_new_tokens=96)) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"])
        self.policy_settings = as_dataclass(ModelSettings, policy)
        self.generation = as_dataclass(GenerationSettings, generation)
        self.val_tool_metrics = ToolCallMetrics()
        self.optimizer_factory = optimizer
        self.model = None
        self._t_last: float | None = None
        self.strict_loading = False  # checkpoints hold the adapter only (see on_save_checkpoint)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        self.model = load_policy(self.policy_settings, device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Only the trainable (LoRA) weights: the frozen, possibly 4-bit base is rebuilt by configure_model on resume.
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        # Settings dataclasses → plain dicts, so `--ckpt_path` loads with torch.load(weights_only=True).
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        if position_ids is not None:  # packed rows: restarting positions and no 2-D mask = block-diagonal attention
            return self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    def _weight_normalizer(self, batch: dict) -> torch.Tensor | None:
        """Mean Σw over data-parallel ranks (None on one process): the global Σ w·CE / Σ w under DDP."""
        if self._trainer is None or self.trainer.world_size <= 1:
            return None
        local = label_weights(batch["labels"], batch["weights"]).sum()
        return self.all_gather(local.detach()).float().mean()

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        logits = self(batch["input_ids"], batch["attention_mask"], batch.get("position_ids"))
        labels = batch["labels"]
        weighted = weighted_cross_entropy(logits, labels, batch["weights"], self._weight_normalizer(batch))
        with torch.no_grad():
            ce = token_cross_entropy(logits, labels)
            trained = labels[:, 1:] != IGNORE_INDEX
            plain = (ce * trained).sum() / trained.sum().clamp_min(1)
            correct = (logits[:, :-1].argmax(-1) == labels[:, 1:]) & trained
            key = batch["key_mask"][:, 1:] & trained
            key_acc = (correct & key).sum() / key.sum().clamp_min(1)
            acc = correct.sum() / trained.sum().clamp_min(1)
        return {"weighted_loss": weighted, "loss": plain, "key_token_acc": key_acc, "token_acc": acc,
                "trained_tokens": trained.sum()}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        bs = batch["input_ids"].size(0)
        for k in ("loss", "weighted_loss", "key_token_acc", "token_acc"):
            # weighted_loss synced over ranks: the mean of Σ_r w·CE / mean(Σw) is the global Σ w·CE / Σ w
            self.log(f"train/{k}", out[k], prog_bar=k == "loss", batch_size=bs, sync_dist=k == "weighted_loss")
        now = time.perf_counter()
        if self._t_last is not None:
            self.log("train/tokens_per_s", batch["attention_mask"].sum().float() / (now - self._t_last), batch_size=bs)
        self._t_last = now
        return out["weighted_loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self._losses(batch)
        bs = batch["input_ids"].size(0)
        for k in ("loss", "weighted_loss", "key_token_acc", "token_acc"):
            self.log(f"val/{k}", out[k], prog_bar=k == "loss", batch_size=bs, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        n = self.hparams.val_generation
        if not n or dm is None or not getattr(dm, "val_prompts", None) or self.trainer.sanity_checking:
            return
        preds = predict(self.model, dm.tok, dm.renderer(), dm.val_prompts[:n], self.generation,
                        batch_size=dm.hparams.batch_size, add_special_tokens=dm.hparams.prompt_format == "paper")
        self.val_tool_metrics.update_classified([p.classification for p in preds])
        for k, v in self.val_tool_metrics.compute().items():
            self.log(f"val/{k}", v, prog_bar=k == "cf")
        self.val_tool_metrics.reset()

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            opt = self.optimizer_factory(params)
        else:
            opt = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.01)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.hparams.warmup_ratio * total)
        if self.hparams.schedule == "cosine":
            fn = lambda s: cosine_with_warmup(s, warmup, total)  # noqa: E731
        else:
            fn = lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0  # noqa: E731
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
