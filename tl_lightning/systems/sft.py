"""`SFTSystem`: weighted-token SFT (MAE masks + PKT weights come with the batch) on a 4-bit/8-bit/full base + LoRA.

Validation batches are teacher-forced (loss, key-token accuracy) or, from the datamodule's second validation
loader, `PromptBatch`es of step prompts that are decoded greedily and scored (TS / PI / CF, category rates).
"""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.core.errors import as_dataclass, to_plain
from tl_lightning.data.batches import PromptBatch
from tl_lightning.evaluation.predict import predict_batch
from tl_lightning.metrics.tool_call import ToolCallMetrics
from tl_lightning.models.engine import DecodeLoop
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, decoder_and_head, load_policy, prepare_checkpoint
from tl_lightning.objectives.chunked import head_stats
from tl_lightning.systems.schedules import WarmupCosine, build_schedule


def default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.01)


class SFTSystem(L.LightningModule):
    """Weighted-token SFT of a tool-calling policy.

    Args:
        policy: what to load (checkpoint, quantization, LoRA, gradient checkpointing).
        optimizer: optimizer factory (default AdamW, lr 2e-4, betas (0.9, 0.95), weight decay 0.01).
        lr_scheduler: schedule factory, stepped every optimizer step (default `WarmupCosine` with 3% warmup).
        generation: decoding of the validation step prompts (the datamodule's `val_generation`).
        loss_chunk_size: the loss reads the decoder's final hidden states and applies the output head to the trained
            positions only, never building full-vocabulary logits of the untrained ones (Note [chunked head] in
            objectives/chunked.py). null: all trained positions in one head call, kept for backward; an int: at most
            this many positions' logits at a time, recomputed in backward (less memory, one more head matmul).
    """

    def __init__(self, policy: ModelSettings = ModelSettings(), optimizer: OptimizerCallable | None = None,
                 lr_scheduler: LRSchedulerCallable | None = None,
                 generation: GenerationSettings = GenerationSettings(max_new_tokens=96),
                 loss_chunk_size: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_settings = as_dataclass(ModelSettings, policy)
        self.generation = as_dataclass(GenerationSettings, generation)
        self.engine = DecodeLoop()  # decodes the validation step prompts (one engine: its dense copy is reused)
        self.val_tool_metrics = ToolCallMetrics()
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.model = None
        self.tokenizer = None
        self._step_weight: torch.Tensor | None = None  # Σ w of the micro-batches accumulated for the next step
        self._t_last: float | None = None
        self.strict_loading = False  # checkpoints hold the adapter only (see on_save_checkpoint)

    def prepare_data(self) -> None:
        prepare_checkpoint(self.policy_settings)  # e.g. the quickstart's tiny model, built on first use

    def configure_model(self) -> None:
        if self.model is not None:
            return
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        self.tokenizer = load_tokenizer(self.policy_settings.checkpoint)
        self.model = load_policy(self.policy_settings, device)
        decoder_and_head(self.model)  # refuses, now rather than at the first step, logits the loss cannot reproduce

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Only the trainable (LoRA) weights: the frozen, possibly 4-bit base is rebuilt by configure_model on resume.
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        # Settings dataclasses → plain dicts, so `--ckpt_path` loads with torch.load(weights_only=True).
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if key in checkpoint:
                checkpoint[key] = to_plain(checkpoint[key])

    def _losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Weighted loss (Σ w·CE and Σ w) and metrics from the final hidden states; the head sees only the trained
        positions (Note [chunked head]). Position t predicts token t + 1 (Note [label shift])."""
        decoder, head = decoder_and_head(self.model)  # looked up, not stored: no second path to the model's modules
        if batch.get("position_ids") is not None:  # packed rows: restarting positions, no 2-D mask = block-diagonal
            inputs = {"position_ids": batch["position_ids"]}
        else:
            inputs = {"attention_mask": batch["attention_mask"]}
        hidden = decoder(input_ids=batch["input_ids"], use_cache=False, **inputs).last_hidden_state
        labels = batch["labels"][:, 1:]
        trained = labels != IGNORE_INDEX
        chunk = self.hparams.loss_chunk_size
        stats = head_stats(hidden[:, :-1][trained], head, labels[trained], chunk, recompute=bool(chunk))
        w = batch["weights"][:, 1:][trained].float()
        key = batch["key_mask"][:, 1:][trained]
        ce = -stats.logp
        weighted_sum, weight_total = (ce * w).sum(), w.sum()
        n = trained.sum()
        return {"weighted_loss": weighted_sum / weight_total.clamp_min(1e-8), "weighted_sum": weighted_sum,
                "weight_total": weight_total, "loss": ce.detach().sum() / n.clamp_min(1),
                "key_token_acc": (stats.correct & key).sum() / key.sum().clamp_min(1),
                "token_acc": stats.correct.sum() / n.clamp_min(1), "trained_tokens": n}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        out = self._losses(batch)
        bs = batch["input_ids"].size(0)
        self._step_weight = out["weight_total"] + (self._step_weight if self._step_weight is not None else 0.0)
        sums = self._global_sum(torch.stack([out["weighted_sum"].detach(), out["weight_total"]]))
        self.log("train/weighted_loss", sums[0] / sums[1].clamp_min(1e-8), batch_size=bs)  # this micro-batch, all ranks
        for k in ("loss", "key_token_acc", "token_acc"):
            self.log(f"train/{k}", out[k], prog_bar=k == "loss", batch_size=bs)
        now = time.perf_counter()
        if self._t_last is not None:
            self.log("train/tokens_per_s", batch["attention_mask"].sum().float() / (now - self._t_last), batch_size=bs)
        self._t_last = now
        # Σ w·CE, not a mean: the step's Σ w normalises the accumulated gradient (Note [weight normalisation])
        return out["weighted_sum"]

    def on_before_optimizer_step(self, optimizer) -> None:
        """Divide the step's accumulated gradient by the step's Σ w (all micro-batches, all ranks), undoing
        Lightning's 1/accumulate_grad_batches and DDP's 1/world averaging (Note [weight normalisation])."""
        if self._step_weight is None:
            return
        scale = self.trainer.accumulate_grad_batches * self.trainer.world_size / \
            self._global_sum(self._step_weight).clamp_min(1e-8)
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(scale.to(p.grad.dtype))
        self._step_weight = None

    def _global_sum(self, x: torch.Tensor) -> torch.Tensor:
        if self._trainer is None or self.trainer.world_size <= 1:
            return x
        return self.trainer.strategy.reduce(x.float(), reduce_op="sum")

    def validation_step(self, batch: dict | PromptBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(batch, PromptBatch):  # step prompts: decode greedily and score
            if not self.trainer.sanity_checking:
                preds = predict_batch(self.model, self.tokenizer, batch, self.generation, engine=self.engine)
                self.val_tool_metrics.update_classified([p.classification for p in preds])
            return
        out = self._losses(batch)
        bs = batch["input_ids"].size(0)
        for k in ("loss", "weighted_loss", "key_token_acc", "token_acc"):
            self.log(f"val/{k}", out[k], prog_bar=k == "loss", batch_size=bs, sync_dist=True, add_dataloader_idx=False)

    def on_validation_epoch_start(self) -> None:
        self.engine.policy_changed()  # the adapter trained since the last validation: rebuild any sampling copy once

    def on_validation_epoch_end(self) -> None:
        if float(self.val_tool_metrics.total) == 0:  # nothing decoded (no prompt loader, or the sanity check)
            return
        for k, v in self.val_tool_metrics.compute().items():
            self.log(f"val/{k}", v, prog_bar=k == "cf")
        self.val_tool_metrics.reset()

    def on_train_start(self) -> None:
        # A resumed checkpoint restores the schedule with the old run's length; a run resumed with a higher
        # max_epochs continues it over the new length (else its LR would stay at the old end, 0 for a cosine).
        schedule = self.lr_schedulers()
        if hasattr(schedule, "set_total_steps"):
            schedule.set_total_steps(int(self.trainer.estimated_stepping_batches))

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = (self.optimizer_factory or default_optimizer)(params)
        sched = build_schedule(self.scheduler_factory, opt, int(self.trainer.estimated_stepping_batches),
                               default=lambda o: WarmupCosine(o, warmup=0.03))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
