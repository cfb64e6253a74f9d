"""`EpisodeDataModule`: the tasks of an environment, in batches, for online RL (train) and task-success
evaluation (val, test). The environment is the data: a batch carries it and the renderer of the prompt format,
and the system runs the batch's episodes in fresh copies of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.data import DataLoader

from tl_lightning.core.errors import UserError
from tl_lightning.data.base_datamodule import ToolDataModule
from tl_lightning.envs.environment import Environment, Task
from tl_lightning.format.render import Renderer


@dataclass(frozen=True)
class TaskBatch:
    """Tasks to run episodes of, the environment (a prototype: every episode runs in a copy of it) and the
    renderer that writes the episodes as text."""

    tasks: list[Task]
    environment: Environment
    renderer: Renderer

    def __len__(self) -> int:
        return len(self.tasks)


class EpisodeDataModule(ToolDataModule):
    """Tasks of an environment.

    Args:
        environment: the environment (`class_path`): `ToolWorldEnv`, `PythonTools`, or your own `Environment`.
        tokenizer: tokenizer path or hub id (linked from the model's checkpoint).
        prompt_format: "paper" or "chat_template": how episodes are written (as the SFT adapter was trained).
        train_tasks: tasks of the "train" split, reshuffled every epoch (seeded).
        val_tasks: tasks of the "val" split, for `val/success_rate` (0: no validation).
        test_tasks: tasks of the "test" split, for `main.py test` (held out from training by the split).
        batch_size: tasks per RL iteration (each run `group_size` times).
        eval_batch_size: tasks whose greedy episodes run together in validation and test.
        seed: the training order's seed.
    """

    def __init__(self, environment: Environment, tokenizer: str = "codellama/CodeLlama-7b-hf",
                 prompt_format: Literal["paper", "chat_template"] = "paper", train_tasks: int = 256,
                 val_tasks: int = 0, test_tasks: int = 100, batch_size: int = 2, eval_batch_size: int = 16,
                 seed: int = 0) -> None:
        super().__init__()
        if min(batch_size, eval_batch_size) < 1:
            raise UserError(f"data.init_args.batch_size and eval_batch_size must be >= 1, got {batch_size}, "
                            f"{eval_batch_size}")
        self.environment = environment
        self.save_hyperparameters(ignore=["environment"])
        self.splits: dict[str, list[Task]] = {}

    def _tasks(self, split: str, size: int) -> list[Task]:
        if split not in self.splits:
            self.splits[split] = self.environment.tasks(split, size) if size else []
        return self.splits[split]

    def _loader(self, split: str, size: int, train: bool = False) -> DataLoader:
        g = torch.Generator().manual_seed(self.hparams.seed) if train else None
        renderer = self.renderer()
        return DataLoader(self._tasks(split, size), shuffle=train, generator=g,
                          batch_size=self.hparams.batch_size if train else self.hparams.eval_batch_size,
                          collate_fn=lambda tasks: TaskBatch(list(tasks), self.environment, renderer))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.train_tasks, train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", self.hparams.val_tasks) if self.hparams.val_tasks else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.test_tasks)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch  # tasks hold no tensors
