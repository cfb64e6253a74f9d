"""Length-grouped batching that stays identical on 1 or N processes.

`LengthGroupedSampler` draws a seeded permutation per epoch, cuts it into mega-batches of `group` global batches,
sorts each mega-batch by length (longest first), cuts it into global batches (batch_size x world size), shuffles
the order of those batches, and yields this rank's slice of each. Sequences of similar length share a batch, so
less of each batch is padding; the global batches do not depend on the number of processes. It subclasses
DistributedSampler so Lightning keeps it under DDP and calls `set_epoch`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler


class LengthGroupedSampler(DistributedSampler):
    def __init__(self, lengths: Sequence[int], batch_size: int, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 group: int = 50) -> None:
        super().__init__(list(range(len(lengths))), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.group = group
        self.global_batch = batch_size * num_replicas
        self.n_batches = math.ceil(len(self.lengths) / self.global_batch)
        self.num_samples = self.n_batches * batch_size
        self.total_size = self.num_samples * num_replicas

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches (the same for every rank and every world size with equal global batch)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        order += order[: self.total_size - len(order)]  # pad by repeating, as DistributedSampler does
        mega = self.global_batch * self.group
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start:start + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + self.global_batch] for i in range(0, len(chunk), self.global_batch)]
        shuffled = torch.randperm(len(batches), generator=g).tolist()
        return [batches[i] for i in shuffled]

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches():
            yield from batch[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.num_samples
