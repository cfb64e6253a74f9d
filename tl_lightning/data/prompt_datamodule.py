"""`ToolPromptDataModule`: step prompts (context + gold call) for PPO rollouts, as an endless seeded stream.

Each pass over the prompts uses a permutation drawn from (seed, pass); the stream position (`consumed`) is saved in
Lightning checkpoints, so a resumed run continues with exactly the prompts it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset

from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.data.mae import MAESettings
from tl_lightning.data.schema import Conversation
from tl_lightning.data.sft_datamodule import DataSource
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.errors import DataError, as_dataclass


class PromptStream(IterableDataset):
    """Batches of prompts, from position `start` of the endless permuted stream."""

    def __init__(self, prompts: list[Conversation], batch_size: int, seed: int, start: int) -> None:
        self.prompts, self.batch_size, self.seed, self.start = prompts, batch_size, seed, start

    def index(self, position: int) -> int:
        n = len(self.prompts)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + position // n)
        return int(torch.randperm(n, generator=g)[position % n])

    def __iter__(self) -> Iterator[list[Conversation]]:
        pos = self.start
        while True:
            yield [self.prompts[self.index(p)] for p in range(pos, pos + self.batch_size)]
            pos += self.batch_size


class ToolPromptDataModule(ToolDataModule):
    """Prompts for PPO.

    Args:
        tokenizer: tokenizer path (linked from the model's checkpoint).
        source: conversations to cut into step prompts (erroneous calls are context, never gold).
        batch_size: prompts per rollout (paper code: 8).
        shuffle_seed: seed of the prompt order.
        prompt_format: "paper" or "chat_template" (as in SFT).
        mae: which tool outputs count as errors when choosing gold steps.
        max_prompts: use at most this many step prompts.
    """

    def __init__(self, tokenizer: str = "codellama/CodeLlama-7b-hf", source: DataSource = DataSource(),
                 batch_size: int = 8, shuffle_seed: int = 0, prompt_format: str = "paper", mae: MAESettings = MAESettings(),
                 max_prompts: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.source = as_dataclass(DataSource, source)
        self.mae = as_dataclass(MAESettings, mae)
        self.tok = None
        self.prompts: list[Conversation] = []
        self.consumed = 0  # prompts handed to training_step so far (the system advances it)

    def setup(self, stage: str | None = None) -> None:
        if self.prompts:
            return
        self.load_tokenizer()
        convs, _ = self.source.load()
        self.prompts = all_step_prompts(convs, self.mae.build())[: self.hparams.max_prompts]
        if not self.prompts:
            raise DataError(f"no step prompt with a gold call in {self.source.format} {self.source.path or self.source.split}")

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch  # conversations (text): the system tokenizes and places tensors itself

    def train_dataloader(self) -> DataLoader:
        stream = PromptStream(self.prompts, self.hparams.batch_size, self.hparams.shuffle_seed, self.consumed)
        return DataLoader(stream, batch_size=None, collate_fn=lambda b: b)

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed = int(state["consumed"])
