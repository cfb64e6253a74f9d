"""`ToolSFTDataModule`: conversations → MAE → render → one-pass tokenization with PKT weights → padded batches.

Sources are ToolWorld (built in, no files needed) or any file format of `tl_lightning.data.loaders` (loaded through
an HF `datasets` cache). The module writes `data_stats.json` (MAE error categories, skips, token counts) next to
the run's logs and logs a one-line summary.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, DistributedSampler

from tl_lightning.constants import IGNORE_INDEX
from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.data.loaders import LoadReport, as_hf_dataset
from tl_lightning.data.mae import MAESettings, apply_mae
from tl_lightning.data.render import Rendered
from tl_lightning.data.samplers import LengthGroupedSampler
from tl_lightning.data.schema import Conversation
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import Encoded, PKTSettings, check_prefix, encode_rendered
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.errors import DataError, as_dataclass

log = logging.getLogger(__name__)


@dataclass
class DataSource:
    """Where conversations come from."""

    format: Literal["toolworld", "conversations", "openai", "toolbench", "rotbench", "toolalpaca", "tooleyes"] = "toolworld"
    """"toolworld" (generated) or a file format of tl_lightning.data.loaders."""
    path: str | None = None
    """File or directory for file formats."""
    split: str = "train"
    """ToolWorld split name (splits with different names are disjoint)."""
    size: int = 1000
    """ToolWorld: number of conversations."""
    seed: int = 0
    """ToolWorld seed."""
    error_rate: float = 0.17
    """ToolWorld: share of calls preceded by an erroneous attempt."""
    on_error: Literal["raise", "skip"] = "skip"
    """Files: stop at the first bad item, or count and skip it."""
    limit: int | None = None
    """Use at most this many conversations."""

    def load(self, cache_dir: str | None = None) -> tuple[list[Conversation], LoadReport]:
        if self.format == "toolworld":
            convs = ToolWorld(seed=self.seed, error_rate=self.error_rate).split(self.split, self.size)
            report = LoadReport("toolworld", self.split, loaded=len(convs))
        else:
            if not self.path:
                raise DataError(f"data source format {self.format!r} needs a path")
            ds = as_hf_dataset(self.format, self.path, on_error=self.on_error, cache_dir=cache_dir)
            convs = [Conversation.from_json(s) for s in ds["conversation"]]
            report = LoadReport(self.format, self.path, loaded=len(convs))
        return convs[: self.limit] if self.limit else convs, report


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: example indices grouped into rows of at most `capacity` tokens (longest rows first)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        j = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if j is None:
            rows.append([i])
            room.append(capacity - lengths[i])
        else:
            rows[j].append(i)
            room[j] -= lengths[i]
    return rows


def pack_sft_batch(examples: list[dict], pad_id: int, capacity: int) -> dict[str, torch.Tensor]:
    """Concatenate a batch's examples into as few rows of <= `capacity` tokens as fit, with per-example
    `position_ids` (restarting at 0). transformers turns restarting positions with no 2-D attention mask into a
    block-diagonal causal mask (flash-attention: variable-length kernels), so no token attends across examples.
    Each example's first label is ignored, as in the padded batch where the first position is never a target:
    the loss and gradients equal the padded batch's (tested)."""
    merged = []
    for row in pack_rows([len(e["input_ids"]) for e in examples], max(capacity, max(len(e["input_ids"]) for e in examples))):
        m = {"input_ids": [], "labels": [], "weights": [], "key_mask": [], "position_ids": []}
        for i in row:
            e = examples[i]
            m["input_ids"] += e["input_ids"]
            m["labels"] += [IGNORE_INDEX] + e["labels"][1:]
            m["weights"] += [0.0] + e["weights"][1:]
            m["key_mask"] += [False] + e["key_mask"][1:]
            m["position_ids"] += list(range(len(e["input_ids"])))
        merged.append(m)
    batch = pad_sft_batch(merged, pad_id)
    t = batch["input_ids"].size(1)
    # padding continues the last example's positions: causal, after every real token, and never a target
    batch["position_ids"] = torch.tensor([m["position_ids"] + list(range(m["position_ids"][-1] + 1,
                                                                          m["position_ids"][-1] + 1 + t - len(m["position_ids"])))
                                          for m in merged])
    return batch


def pad_sft_batch(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad: input_ids with `pad_id`, labels with IGNORE_INDEX, weights with 0, key_mask with False."""
    t = max(len(e["input_ids"]) for e in examples)

    def pad(key: str, value, dtype):
        return torch.tensor([e[key] + [value] * (t - len(e[key])) for e in examples], dtype=dtype)

    return {"input_ids": pad("input_ids", pad_id, torch.long), "labels": pad("labels", IGNORE_INDEX, torch.long),
            "weights": pad("weights", 0.0, torch.float32), "key_mask": pad("key_mask", False, torch.bool),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (t - len(e["input_ids"])) for e in examples])}


class ToolSFTDataModule(ToolDataModule):
    """Tool-use SFT data with MAE masks and PKT weights.

    Args:
        tokenizer: tokenizer path or hub id (normally linked from the model's checkpoint).
        train: training source.
        val: validation source (default: a 64-conversation ToolWorld "val" split).
        prompt_format: "paper" (TL-Training CodeLLaMA format) or "chat_template" (the tokenizer's template).
        mae: MAE settings.
        pkt: PKT weighting settings.
        max_length: tokens per sequence (right truncation; sequences left with no trained token are skipped).
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
    """

    def __init__(self, tokenizer: str = "codellama/CodeLlama-7b-hf", train: DataSource = DataSource(),
                 val: DataSource | None = None, prompt_format: Literal["paper", "chat_template"] = "paper",
                 mae: MAESettings = MAESettings(), pkt: PKTSettings = PKTSettings(), max_length: int = 2048,
                 batch_size: int = 4, num_workers: int = 0, cache_dir: str | None = None, shuffle: bool = True,
                 shuffle_seed: int = 0, group_by_length: bool = True, packing: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.train_source = as_dataclass(DataSource, train)
        self.val_source = as_dataclass(DataSource, val) or DataSource(split="val", size=64, seed=self.train_source.seed)
        self.mae = as_dataclass(MAESettings, mae)
        self.pkt = as_dataclass(PKTSettings, pkt)
        self.tok = None
        self.datasets: dict[str, list[dict]] = {}
        self.stats: dict[str, dict] = {}
        self.val_prompts: list[Conversation] = []

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:  # already encoded (e.g. setup called by hand before fit): only write the stats
            self._write_stats()
            return
        self.load_tokenizer()
        for name, source in (("train", self.train_source), ("val", self.val_source)):
            self.datasets[name], self.stats[name] = self.encode_source(source)
        # Step prompts (context up to a correct call + that call as gold) for greedy-decoded validation metrics.
        self.val_prompts = all_step_prompts(self.val_source.load(self.hparams.cache_dir)[0], self.mae.build())
        self._write_stats()

    def encode_conversation(self, conv: Conversation, counts: Counter | None = None,
                            check: bool = False) -> tuple[Encoded | None, Rendered | None, frozenset[int]]:
        """MAE → render → tokenize one conversation: (encoded or None if MAE dropped it, rendered, blocked turns).

        The one path used by training and by the inspector (`python -m tl_lightning.inspect`).
        """
        kept, blocked = apply_mae(conv, self.mae, counts)
        if kept is None:
            return None, None, blocked
        add_special = self.hparams.prompt_format == "paper"
        rendered = self.renderer().render(kept)
        if check and check_prefix(rendered, self.tok, add_special):
            raise DataError(f"{conv.id}: the prompt does not tokenize as a prefix of the full sequence with this "
                            "tokenizer and prompt_format; generation would see other tokens than training")
        enc = encode_rendered(rendered, self.tok, kept.tool_names, blocked, self.pkt, self.hparams.max_length,
                              add_special)
        return enc, rendered, blocked

    def encode_source(self, source: DataSource) -> tuple[list[dict], dict]:
        convs, report = source.load(self.hparams.cache_dir)
        counts: Counter = Counter()
        examples, tokens, trained, blocked = [], 0, 0, 0
        for i, conv in enumerate(convs):
            enc, _, _ = self.encode_conversation(conv, counts, check=i < 8)  # prefix guard on the first examples
            if enc is None:
                continue
            blocked += enc.n_blocked
            if enc.n_trainable == 0:
                counts["skipped_no_trainable_token"] += 1
                continue
            tokens += len(enc.input_ids)
            trained += enc.n_trainable
            examples.append({k: getattr(enc, k) for k in ("input_ids", "labels", "weights", "key_mask")})
        stats = {"source": asdict(source), "conversations": len(convs), "examples": len(examples),
                 "load_skipped": dict(report.skipped), "mae": dict(counts), "tokens": tokens,
                 "trained_tokens": trained, "blocked_tokens": blocked}
        log.info("%s: %d examples, %d tokens (%d trained, %d blocked by MAE); MAE categories %s", source.split,
                 len(examples), tokens, trained, blocked, dict(counts))
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

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
