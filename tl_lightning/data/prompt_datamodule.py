"""`ToolPromptDataModule`: step prompts (context + gold call) for RL rollouts, as an endless seeded stream of
`PromptBatch`es.

Each pass over the prompts uses a permutation drawn from (seed, pass). The module counts the prompts it has served
to training (`consumed`, counted when a batch reaches the training step, so a prefetched batch is not counted) and
saves that count in Lightning checkpoints: a resumed run continues with exactly the prompts it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
from torch.utils.data import DataLoader, IterableDataset

from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.data.batches import PromptBatch, collate_prompts
from tl_lightning.data.mae import MAESettings
from tl_lightning.data.sources import DataSource
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.errors import DataError, UserError, as_dataclass


class PromptStream(IterableDataset):
    """Batches of prompt items from position `start` of the endless permuted stream."""

    def __init__(self, items: list[dict], batch_size: int, seed: int, start: int) -> None:
        self.items, self.batch_size, self.seed, self.start = items, batch_size, seed, start

    def index(self, position: int) -> int:
        n = len(self.items)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + position // n)
        return int(torch.randperm(n, generator=g)[position % n])

    def __iter__(self) -> Iterator[PromptBatch]:
        pos = self.start
        while True:
            yield collate_prompts([self.items[self.index(p)] for p in range(pos, pos + self.batch_size)])
            pos += self.batch_size


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
    """

    def __init__(self, tokenizer: str = "codellama/CodeLlama-7b-hf", source: DataSource = DataSource(),
                 batch_size: int = 8, shuffle_seed: int = 0,
                 prompt_format: Literal["paper", "chat_template"] = "paper", mae: MAESettings = MAESettings(),
                 max_prompts: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.source = as_dataclass(DataSource, source)
        self.mae = as_dataclass(MAESettings, mae)
        self.tok = None
        self.items: list[dict] = []
        self.consumed = 0  # prompts (not samples) handed to the training step so far

    def check_paths(self) -> None:
        """Missing data files, in one line, before the trainer starts (the CLI calls this)."""
        self.source.check_path()

    def setup(self, stage: str | None = None) -> None:
        if self.items:
            return
        convs, _ = self.source.load()
        prompts = all_step_prompts(convs, self.mae.detector)[: self.hparams.max_prompts]
        if not prompts:
            where = self.source.path or self.source.split
            raise DataError(f"no step prompt with a gold call in {self.source.format} {where}")
        self.items = self.prompt_items(prompts)

    def train_dataloader(self) -> DataLoader:
        stream = PromptStream(self.items, self.hparams.batch_size, self.hparams.shuffle_seed, self.consumed)
        return DataLoader(stream, batch_size=None, collate_fn=_as_is)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, PromptBatch) and self.trainer is not None and self.trainer.training:
            self.consumed += len(batch)
        return batch

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])
