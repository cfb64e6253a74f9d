"""Callbacks: HF-format export of the trained adapters (+ tokenizer + resolved config) at each checkpoint and at
the end, checked against the trained tensors before anything is written, so outputs load back with
`PeftModel.from_pretrained` / `AutoTokenizer.from_pretrained`; what a resumed run did; plain-line progress for logs
and CI."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar

from tl_lightning.core.errors import UserError
from tl_lightning.data.tokenization import save_tokenizer
from tl_lightning.systems.model_card import prompt_format_of, write_model_card
from tl_lightning.systems.strategies import full_state_dict

log = logging.getLogger(__name__)


# Prefixes FSDP and its activation checkpointing add to parameter names; the saved state dict has none.
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")
_FSDP_HINT = "Known with the FSDP overlay (README: Several GPUs); train with DDP or on one device"


def trained_adapters(model) -> list[str]:
    """The peft adapters training updates, in peft's order. PPO's frozen `reference` (loaded with
    `is_trainable=False`, so in inference mode) is not one: it is not exported, PPO reloads it from the SFT adapter."""
    return [name for name, cfg in getattr(model, "peft_config", {}).items() if not cfg.inference_mode]


def adapter_lora(model, state: Mapping[str, torch.Tensor], adapter: str) -> dict[str, torch.Tensor]:
    """The LoRA tensors `save_pretrained(state_dict=state)` writes for `adapter`, under their file keys: peft's own
    selection and renaming, so the check and the file cannot disagree on which tensors belong to the adapter."""
    from peft import get_peft_model_state_dict

    chosen = get_peft_model_state_dict(model, state_dict=dict(state), adapter_name=adapter, save_embedding_layers=False)
    return {k: v for k, v in chosen.items() if "lora_" in k}


def lora_mismatch(saved: Mapping[str, torch.Tensor], trained: Mapping[str, torch.Tensor]) -> str | None:
    """How `saved` fails to hold the `trained` tensors (both by file key), or None: every key there, same shape,
    same values. Values are compared exactly at the saved precision (a bf16 copy is a rounding, not a loss)."""
    missing = [k for k in trained if k not in saved]
    if missing:
        return f"{len(missing)} of {len(trained)} LoRA tensors missing (first: {missing[0]})"
    for k, t in trained.items():
        if saved[k].shape != t.shape:
            return f"{k} has shape {tuple(saved[k].shape)}, the trained tensor {tuple(t.shape)}"
    differ = [k for k, t in trained.items()
              if not torch.equal(saved[k].detach().cpu(), t.detach().cpu().to(saved[k].dtype))]
    if differ:
        return f"{len(differ)} of {len(trained)} LoRA tensors differ from the trained ones (first: {differ[0]})"
    return None


def export_refusal(model, state: Mapping[str, torch.Tensor]) -> str | None:
    """Why the adapters built from `state` (the state to be saved) must not be written, or None: the first trained
    adapter whose LoRA tensors are not the model's live parameters. Under FSDP call it with the full parameters
    summoned (`_whole_parameters`), where the live parameters are the trained tensors, not shards."""
    live = {_unwrapped_name(n): p for n, p in model.named_parameters()}
    for adapter in trained_adapters(model):
        problem = lora_mismatch(adapter_lora(model, state, adapter), adapter_lora(model, live, adapter))
        if problem:
            return f"adapter {adapter!r}: {problem}"
    return None


def _unwrapped_name(name: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _whole_parameters(root: torch.nn.Module):
    """FSDP: a context with every parameter unsharded, on rank 0 only, in CPU memory (a collective every rank
    joins); otherwise nothing to do. `root` is the outermost module, so the parameters its own unit holds count."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    if not any(isinstance(m, FullyShardedDataParallel) for m in root.modules()):
        return contextlib.nullcontext()
    return FullyShardedDataParallel.summon_full_params(root, writeback=False, rank0_only=True, offload_to_cpu=True)


class HFExport(L.Callback):
    """Save `model` (a peft model: its trained adapters) + tokenizer + the run's config.yaml under `<log_dir>/hf/`.

    Before anything is written, the adapters about to be saved are checked against the trained parameters (every
    LoRA tensor there, same shape, same values); on a mismatch every rank stops with one `UserError` and nothing is
    on disk. The export is written to `<name>.partial` and renamed, so a crash mid-write leaves no half export.

    Args:
        dirname: sub-directory of the run's log dir.
        every_checkpoint: also export at every Lightning checkpoint save (as `step-N`), not only at the end.
    """

    def __init__(self, dirname: str = "hf", every_checkpoint: bool = True) -> None:
        self.dirname = dirname
        self.every_checkpoint = every_checkpoint
        self.final_dir: Path | None = None
        self.start_step: int | None = None  # the step training (re)started from; None until it starts

    def _export(self, trainer: L.Trainer, pl_module: L.LightningModule, name: str) -> Path | None:
        model = getattr(pl_module, "model", None)
        if model is None:
            return None
        out = Path(trainer.log_dir or trainer.default_root_dir) / self.dirname / name
        state = full_state_dict(model)  # FSDP: a collective every rank joins, the state on rank 0; None otherwise
        root = getattr(trainer.strategy, "model", None)
        refusal = value_head = None
        with _whole_parameters(root if root is not None else pl_module):
            if trainer.is_global_zero:
                state = model.state_dict() if state is None else state
                refusal = export_refusal(model, state)
                value_head = _value_head_state(pl_module)
        # One verdict for every rank: rank 0 alone holds the gathered state, and a rank that went on alone would
        # wait forever on a collective rank 0 never joins.
        refusal = trainer.strategy.broadcast(refusal, src=0)
        if refusal:
            raise UserError(f"{out}: refusing to export {refusal}. {_FSDP_HINT}")
        if not trainer.is_global_zero:
            return None
        stage = out.with_name(f"{out.name}.partial")
        shutil.rmtree(stage, ignore_errors=True)  # left by a crash
        stage.mkdir(parents=True)
        try:
            self._write(stage, trainer, pl_module, state, value_head)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        if out.exists():  # exported before at this step (two checkpoint saves at one step)
            shutil.rmtree(out)
        stage.rename(out)
        return out

    @staticmethod
    def _write(out: Path, trainer: L.Trainer, pl_module: L.LightningModule, state: dict,
               value_head: dict | None) -> None:
        model = pl_module.model
        adapters = trained_adapters(model)  # PPO's "critic" goes to a sub-folder; the frozen reference stays out
        model.save_pretrained(out, state_dict=state, **({"selected_adapters": adapters} if adapters else {}))
        if value_head is not None:  # PPO: the value head travels with the adapters
            from safetensors.torch import save_file

            save_file(value_head, str(out / "value_head.safetensors"))
        for name in ("config.yaml", "data_stats.json"):  # what the card (and the server) read about the run
            src = Path(trainer.log_dir or "") / name
            if src.is_file():
                shutil.copy(src, out / name)
        tok = getattr(pl_module, "tokenizer", None)
        if tok is not None:
            save_tokenizer(tok, out, prompt_format_of(out))
        metrics = {k: float(v) for k, v in getattr(trainer, "callback_metrics", {}).items()
                   if k.startswith(("val", "test")) and torch.is_tensor(v) and v.numel() == 1}
        write_model_card(out, "peft", metrics)  # replaces peft's template card

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.every_checkpoint:
            self._export(trainer, pl_module, f"step-{trainer.global_step}")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start_step = trainer.global_step
        if trainer.ckpt_path and trainer.is_global_zero:
            print(f"Resuming from {trainer.ckpt_path}: epoch {trainer.current_epoch}, step {trainer.global_step}; "
                  f"training until {_limit(trainer)}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.final_dir = self._export(trainer, pl_module, "final")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the progress bar has finished. When a resumed checkpoint had already reached the limit, Lightning
        # skips the training loop (no on_train_start / on_train_end): export anyway and say how to train further.
        resumed_done = self.final_dir is None and self.start_step is None and trainer.ckpt_path
        if resumed_done:
            self.final_dir = self._export(trainer, pl_module, "final")
        if self.final_dir is None:
            return
        logs = Path(trainer.log_dir or trainer.default_root_dir)
        if resumed_done:
            head = (f"Nothing to train: {trainer.ckpt_path} is at step {trainer.global_step}, already at "
                    f"{_limit(trainer)}. To train further, resume with a higher limit, e.g. "
                    f"--trainer.max_epochs {(trainer.max_epochs or 0) + 2}.")
        elif trainer.ckpt_path:
            head = (f"Training done: resumed from {trainer.ckpt_path} at step {self.start_step}, trained steps "
                    f"{self.start_step}-{trainer.global_step}.")
        else:
            head = "Training done."
        written = ", ".join(f for f in ("metrics.csv", "config.yaml", "data_stats.json", "samples.jsonl")
                            if (logs / f).is_file())
        print(f"\n{head}\n  adapter + tokenizer + config: {self.final_dir}\n"
              f"  logs ({written}): {logs}\n"
              f"  Lightning checkpoints: {logs / 'checkpoints'}\n")


def _value_head_state(pl_module: L.LightningModule) -> dict[str, torch.Tensor] | None:
    """PPO's value head as CPU copies (taken while FSDP's full parameters are summoned: outside, they are shards)."""
    head = getattr(pl_module, "value_head", None)
    if head is None:
        return None
    return {k: v.detach().cpu().clone().contiguous() for k, v in head.state_dict().items()}


def _limit(trainer: L.Trainer) -> str:
    if trainer.max_steps is not None and trainer.max_steps >= 0:
        return f"max_steps={trainer.max_steps}"
    return f"max_epochs={trainer.max_epochs}"


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


class PlainProgressBar(ProgressBar):
    """Progress as plain lines, for a log file, a CI job or a notebook (where a live bar draws nothing).

    Every `every_n_batches` training batches: epoch, batch, the progress-bar metrics (SFT: loss) and the RL
    metrics in `rl_keys` when logged (reward, KL), rate and elapsed time; after each validation, the validation
    metrics; during tests, the batch count. `TLCLI` uses it in place of the live bar when stdout is not a terminal.

    Args:
        every_n_batches: print every this many training batches; null: the trainer's `log_every_n_steps`, at
            least a twentieth of an epoch.
        rl_keys: logged metrics printed when present (PPO / GRPO: the mean reward, the KL to the reference;
            online RL: the task success).
    """

    def __init__(self, every_n_batches: int | None = None,
                 rl_keys: tuple[str, ...] = ("reward/mean", "reward/rate/format_error", "ppo/kl",
                                             "episode/success_rate")) -> None:
        super().__init__()
        self.every_n_batches, self.rl_keys = every_n_batches, rl_keys
        self.enabled = True
        self._t0 = time.monotonic()

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _every(self, trainer: L.Trainer) -> int:
        if self.every_n_batches:
            return self.every_n_batches
        per_epoch = self.total_train_batches if math.isfinite(self.total_train_batches) else 0
        return max(1, trainer.log_every_n_steps, math.ceil(per_epoch / 20))

    @staticmethod
    def _metrics(items) -> str:
        return "  ".join(f"{k} {float(v):.4g}" for k, v in items if k != "v_num")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        n = batch_idx + 1
        if not self.enabled or (n % self._every(trainer) and n != self.total_train_batches):
            return
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if not k.startswith("val/")}
        metrics.update({k: trainer.callback_metrics[k] for k in self.rl_keys if k in trainer.callback_metrics})
        elapsed = time.monotonic() - self._t0
        total = self.total_train_batches
        of = f"/{total}" if math.isfinite(total) else ""
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        print(f"epoch {trainer.current_epoch + 1}{epochs}  batch {n}{of}  {self._metrics(metrics.items())}"
              f"  ({elapsed:.0f} s)", flush=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled or trainer.sanity_checking:
            return
        metrics = [(k, v) for k, v in trainer.callback_metrics.items() if k.startswith("val/") and "/rate/" not in k]
        print(f"epoch {trainer.current_epoch + 1} validation  {self._metrics(sorted(metrics))}", flush=True)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        n, total = batch_idx + 1, trainer.num_test_batches[dataloader_idx]
        if self.enabled and math.isfinite(total) and (n % max(1, math.ceil(total / 5)) == 0 or n == total):
            print(f"test batch {n}/{total}  ({time.monotonic() - self._t0:.0f} s)", flush=True)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.monotonic()

