"""`ToolSFTDataModule`: conversations → MAE → render → one-pass tokenization with PKT weights → padded batches.

Sources are ToolWorld (built in, no files needed) or any file format of `tl_lightning.data.loaders` (loaded through
an HF `datasets` cache). The module writes `data_stats.json` (MAE error categories, skips, token counts) next to
the run's logs and logs a one-line summary. Validation has two loaders: teacher-forced batches (loss, key-token
accuracy) and, with `val_generation`, `PromptBatch`es of step prompts the system decodes and scores.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Literal

from torch.utils.data import DataLoader, DistributedSampler

from tl_lightning.core.errors import DataError, as_dataclass
from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.data.collate import pack_sft_batch, pad_sft_batch
from tl_lightning.data.mae import MAESettings, apply_mae
from tl_lightning.data.samplers import LengthGroupedSampler
from tl_lightning.data.sources import DataSource
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import Encoded, check_prefix, encode_rendered
from tl_lightning.data.weighting import PKTWeighting, TokenWeighting
from tl_lightning.format.render import Rendered
from tl_lightning.format.schema import Conversation

log = logging.getLogger(__name__)


def turns_followed_by_user(conv: Conversation) -> frozenset[int]:
    """Assistant message indices whose next message is a user message (the paper code does not train them)."""
    msgs = conv.messages
    return frozenset(i for i, m in enumerate(msgs[:-1]) if m.role == "assistant" and msgs[i + 1].role == "user")


class ToolSFTDataModule(ToolDataModule):
    """Tool-use SFT data with MAE masks and PKT weights.

    Args:
        tokenizer: tokenizer path or hub id (normally linked from the model's checkpoint).
        train: training source.
        val: validation source (default: a 64-conversation ToolWorld "val" split).
        prompt_format: "paper" (TL-Training CodeLLaMA format) or "chat_template" (the tokenizer's template).
        mae: MAE settings (error detector, mask mode).
        weighting: token weighting of trained turns: `PKTWeighting` (the paper) or `UniformWeighting` (plain CE).
        max_length: tokens per sequence. Longer sequences are cut; a trained turn that does not fit whole is not
            trained (never half a call); truncated conversations and dropped turns are counted in data_stats.json.
        batch_size: sequences per batch.
        num_workers: DataLoader workers.
        cache_dir: HF datasets cache for file sources (default: the HF cache).
        shuffle: shuffle the training examples each epoch.
        shuffle_seed: seed of that order. The sampler is a DistributedSampler on any number of processes, so the
            global batch at every step is the same on 1 or N devices (tested: 2-process DDP == 1 process).
        group_by_length: batch sequences of similar length together (training only): less padding, the same
            examples per epoch; see `samplers.LengthGroupedSampler`.
        packing: concatenate each batch's sequences into rows of up to `max_length` tokens with per-sequence
            position ids (no attention across sequences): the same examples and loss per step, less padding.
            Pays off with flash-attention's variable-length kernels on GPU; with SDPA/eager the block-diagonal
            mask is dense (see the README's Performance section for the CPU measurement).
        val_generation: at each validation, the system greedily decodes this many validation step prompts and logs
            TS / PI / CF and error-category rates (`val/ts`, `val/rate/<category>`); 0 turns it off.
        normalization: "token": the loss is Σ w·CE / Σ w over every trained token of an optimizer step (all
            micro-batches, all ranks); "turn": each trained turn's weighted mean CE counts once (the paper code, which
            trains one copy per turn). See Note [weight normalisation] in objectives/weighted_ce.py.
        trained_turns: "all": every assistant turn MAE keeps; "paper": only turns followed by a tool output or ending
            the conversation (the paper code drops a turn that a user message follows).
    """

    def __init__(self, tokenizer: str = "codellama/CodeLlama-7b-hf", train: DataSource = DataSource(),
                 val: DataSource | None = None, prompt_format: Literal["paper", "chat_template"] = "paper",
                 mae: MAESettings = MAESettings(), weighting: TokenWeighting = PKTWeighting(), max_length: int = 2048,
                 batch_size: int = 4, num_workers: int = 0, cache_dir: str | None = None, shuffle: bool = True,
                 shuffle_seed: int = 0, group_by_length: bool = True, packing: bool = False,
                 val_generation: int = 0, normalization: Literal["token", "turn"] = "token",
                 trained_turns: Literal["all", "paper"] = "all") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_source = as_dataclass(DataSource, train)
        self.val_source = as_dataclass(DataSource, val) or DataSource(split="val", size=64, seed=self.train_source.seed)
        self.mae = as_dataclass(MAESettings, mae)
        self.weighting = weighting
        self.tok = None
        self.datasets: dict[str, list[dict]] = {}
        self.stats: dict[str, dict] = {}
        self.val_prompts: list[dict] = []

    def check_paths(self) -> None:
        """Missing data files, in one line, before the trainer starts (the CLI calls this)."""
        self.train_source.check_path()
        self.val_source.check_path()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # already encoded (e.g. setup called by hand before fit): only write the stats
            self._write_stats()
            return
        self.load_tokenizer()
        for name, source in (("train", self.train_source), ("val", self.val_source)):
            self.datasets[name], self.stats[name] = self.encode_source(source)
        if self.hparams.val_generation:
            # Step prompts (context up to a correct call + that call as gold) for greedy-decoded validation metrics.
            prompts = all_step_prompts(self.val_source.load(self.hparams.cache_dir)[0], self.mae.detector)
            self.val_prompts = self.prompt_items(prompts[: self.hparams.val_generation], "val")
        self._write_stats()

    def encode_conversation(self, conv: Conversation, counts: Counter | None = None,
                            check: bool = False) -> tuple[Encoded | None, Rendered | None, frozenset[int]]:
        """MAE → render → tokenize one conversation: (encoded or None if MAE dropped it, rendered, blocked turns).

        The one path used by training and by the inspector (`python -m tl_lightning.cli.inspect`).
        """
        kept, blocked = apply_mae(conv, self.mae, counts)
        if kept is None:
            return None, None, blocked
        if self.hparams.trained_turns == "paper":
            before_user = turns_followed_by_user(kept) - blocked
            if counts is not None:
                counts["untrained_turn_before_user"] += len(before_user)
            blocked = blocked | before_user
        rendered = self.renderer().render(kept)
        if check and check_prefix(rendered, self.tok):
            raise DataError(f"{conv.id}: the prompt does not tokenize as a prefix of the full sequence with this "
                            "tokenizer and prompt_format; generation would see other tokens than training")
        enc = encode_rendered(rendered, self.tok, kept.tool_names, blocked, self.weighting, self.hparams.max_length,
                              per_turn=self.hparams.normalization == "turn", trim_untrained_tail=True)
        return enc, rendered, blocked

    def encode_source(self, source: DataSource) -> tuple[list[dict], dict]:
        convs, report = source.load(self.hparams.cache_dir)
        counts: Counter = Counter()
        examples, tokens, trained, blocked = [], 0, 0, 0
        truncation: Counter = Counter()
        for i, conv in enumerate(convs):
            enc, _, _ = self.encode_conversation(conv, counts, check=i < 8)  # prefix guard on the first examples
            if enc is None:
                continue
            blocked += enc.n_blocked
            truncation.update(truncated_conversations=int(enc.truncated), dropped_turns=enc.dropped_turns)
            if enc.n_trainable == 0:
                counts["skipped_no_trainable_token"] += 1
                continue
            tokens += len(enc.input_ids)
            trained += enc.n_trainable
            examples.append({k: getattr(enc, k) for k in ("input_ids", "labels", "weights", "key_mask")})
        stats = {"source": asdict(source), "conversations": len(convs), "examples": len(examples),
                 "load_skipped": dict(report.skipped), "mae": dict(counts), "tokens": tokens,
                 "trained_tokens": trained, "blocked_tokens": blocked,
                 "truncated_conversations": truncation["truncated_conversations"],
                 "dropped_turns": truncation["dropped_turns"]}
        log.info("%s: %d examples, %d tokens (%d trained, %d blocked by MAE); MAE categories %s", source.split,
                 len(examples), tokens, trained, blocked, dict(counts))
        if truncation["truncated_conversations"]:
            log.warning("%s: %d conversations longer than max_length=%d were cut; %d trained turns that did not fit "
                        "were dropped", source.split, truncation["truncated_conversations"], self.hparams.max_length,
                        truncation["dropped_turns"])
        if not examples:
            raise DataError(f"no trainable example in {source.format} {source.path or source.split}")
        return examples, stats

    def _write_stats(self) -> None:
        trainer = self.trainer
        out = Path(trainer.log_dir) if trainer is not None and trainer.log_dir else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "data_stats.json").write_text(json.dumps(self.stats, indent=2, default=str))

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if distributed else (1, 0)
        # Our own DistributedSampler (Lightning keeps an existing one): same order and global batches on 1 or N
        # processes; Lightning calls set_epoch on it each epoch.
        if shuffle and self.hparams.group_by_length:
            sampler = LengthGroupedSampler([len(e["input_ids"]) for e in self.datasets[name]], self.hparams.batch_size,
                                           world, rank, seed=self.hparams.shuffle_seed)
        else:
            sampler = DistributedSampler(self.datasets[name], num_replicas=world, rank=rank, shuffle=shuffle,
                                         seed=self.hparams.shuffle_seed)
        return DataLoader(self.datasets[name], batch_size=self.hparams.batch_size, sampler=sampler,
                          num_workers=self.hparams.num_workers,
                          collate_fn=self.collate_fn())

    def collate_fn(self):
        """A light picklable collate (DataLoader workers receive it, not the whole datamodule)."""
        if self.hparams.packing:
            return partial(pack_sft_batch, pad_id=self.tok.pad_token_id, capacity=self.hparams.max_length)
        return partial(pad_sft_batch, pad_id=self.tok.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.hparams.shuffle)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        teacher_forced = self._loader("val", shuffle=False)
        if not self.val_prompts:
            return teacher_forced
        return [teacher_forced, self.prompt_loader(self.val_prompts, self.hparams.batch_size)]
