"""`ToolPromptDataModule`: step prompts (context + gold call) for RL rollouts, as an endless seeded stream of
`PromptBatch`es.

Each pass over the prompts uses a permutation drawn from (seed, pass). Under data parallelism the N ranks split
each global batch of N × batch_size consecutive positions of that stream: rank r takes the r-th slice, so the ranks
see disjoint prompts and together exactly what one process with batch N × batch_size would. The module counts the
prompts served to training over all ranks (`consumed`, counted when a batch reaches the training step, so a
prefetched batch is not counted) and saves that count in Lightning checkpoints: a resumed run continues with
exactly the prompts it would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Literal

import torch
from torch.utils.data import DataLoader, IterableDataset

from tl_lightning.core.errors import DataError, UserError, as_dataclass
from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.data.batches import PromptBatch, collate_prompts
from tl_lightning.data.mae import MAESettings
from tl_lightning.data.sources import DataSource
from tl_lightning.data.steps import all_step_prompts

log = logging.getLogger(__name__)


class PromptStream(IterableDataset):
    """Batches of prompt items from position `start` of the endless permuted stream; with `world_size` ranks, this
    rank's slice of each global batch."""

    def __init__(self, items: list[dict], batch_size: int, seed: int, start: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.items, self.batch_size, self.seed, self.start = items, batch_size, seed, start
        self.rank, self.world_size = rank, world_size

    def index(self, position: int) -> int:
        n = len(self.items)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + position // n)
        return int(torch.randperm(n, generator=g)[position % n])

    def __iter__(self) -> Iterator[PromptBatch]:
        pos = self.start + self.rank * self.batch_size
        while True:
            yield collate_prompts([self.items[self.index(p)] for p in range(pos, pos + self.batch_size)])
            pos += self.batch_size * self.world_size


def _as_is(batch: PromptBatch) -> PromptBatch:
    return batch  # the stream yields whole batches already


class ToolPromptDataModule(ToolDataModule):
    """Prompts for PPO / group-relative RL.

    Args:
        tokenizer: tokenizer path (linked from the model's checkpoint).
        source: conversations to cut into step prompts (erroneous calls are context, never gold).
        batch_size: prompts per rollout batch (paper code: 8); the system samples each `advantage.group_size`
            times (GRPO / RLOO), so a rollout holds batch_size × group_size responses.
        shuffle_seed: seed of the prompt order.
        prompt_format: "paper" or "chat_template" (as in SFT).
        mae: which tool outputs count as errors when choosing gold steps.
        max_prompts: use at most this many step prompts.
        max_prompt_length: skip (counted, with a warning) step prompts of more tokens: generation would keep only
            their tail and cut the tool list. Set it to the model's `generation.max_prompt_length` (the system counts
            and warns about any prompt it truncates).
    """

    def __init__(self, tokenizer: str = "codellama/CodeLlama-7b-hf", source: DataSource = DataSource(),
                 batch_size: int = 8, shuffle_seed: int = 0,
                 prompt_format: Literal["paper", "chat_template"] = "paper", mae: MAESettings = MAESettings(),
                 max_prompts: int | None = None, max_prompt_length: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.source = as_dataclass(DataSource, source)
        self.mae = as_dataclass(MAESettings, mae)
        self.tok = None
        self.items: list[dict] = []
        self.consumed = 0  # prompts (not samples) handed to the training step so far, all ranks together
        self.skipped_long = 0

    def check_paths(self) -> None:
        """Missing data files, in one line, before the trainer starts (the CLI calls this)."""
        self.source.check_path()

    def setup(self, stage: str | None = None) -> None:
        if self.items:
            return
        convs, _ = self.source.load()
        prompts = all_step_prompts(convs, self.mae.detector)[: self.hparams.max_prompts]
        where = f"{self.source.format} {self.source.path or self.source.split}"
        if not prompts:
            raise DataError(f"no step prompt with a gold call in {where}")
        self.items = self._skip_long(self.prompt_items(prompts), where)

    def _skip_long(self, items: list[dict], where: str) -> list[dict]:
        limit = self.hparams.max_prompt_length
        kept = [i for i in items if limit is None or len(i["input_ids"]) <= limit]
        self.skipped_long = len(items) - len(kept)
        if self.skipped_long:
            log.warning("%s: skipped %d of %d step prompts longer than max_prompt_length=%d tokens",
                        where, self.skipped_long, len(items), limit)
        if not kept:
            raise DataError(f"{where}: every step prompt is longer than max_prompt_length={limit} tokens")
        return kept

    def train_dataloader(self) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        stream = PromptStream(self.items, self.hparams.batch_size, self.hparams.shuffle_seed, self.consumed, rank,
                              world)
        return DataLoader(stream, batch_size=None, collate_fn=_as_is)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, PromptBatch) and self.trainer is not None and self.trainer.training:
            self.consumed += len(batch) * self.trainer.world_size  # every rank took a slice of the global batch
        return batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])
