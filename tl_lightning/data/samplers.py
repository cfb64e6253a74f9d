"""Length-grouped batching that stays identical on 1 or N processes.

`LengthGroupedSampler` draws a seeded permutation per epoch, cuts it into mega-batches of `group` global batches,
sorts each mega-batch by length (longest first), cuts it into global batches (batch_size x world size), shuffles
the order of the full batches, puts the one partial batch (if the data does not divide) last, and yields this rank's
slice of each. Sequences of similar length share a batch, so less of each batch is padding. Every example comes
once per epoch; only under DDP, when the number of examples is not a multiple of the world size, a few repeat so
that every rank gets as many (as DistributedSampler does). With that exception the global batches do not depend on
the number of processes. It subclasses DistributedSampler so Lightning keeps it under DDP and calls `set_epoch`.
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
        self.num_samples = math.ceil(len(self.lengths) / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def global_batches(self) -> list[list[int]]:
        """The epoch's global batches (the same for every rank and every world size with equal global batch)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        order += order[: self.total_size - len(order)]  # DDP only: every rank gets as many, as DistributedSampler
        mega = self.global_batch * self.group
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start:start + mega], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + self.global_batch] for i in range(0, len(chunk), self.global_batch)]
        # The partial batch goes last: the DataLoader cuts this rank's stream into batch_size pieces, so a short
        # batch anywhere else would shift every later batch.
        full, partial = batches[:len(order) // self.global_batch], batches[len(order) // self.global_batch:]
        shuffled = torch.randperm(len(full), generator=g).tolist()
        return [full[i] for i in shuffled] + partial

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches():
            share = len(batch) // self.num_replicas  # batch_size, or less in the partial last batch
            yield from batch[self.rank * share:(self.rank + 1) * share]

    def __len__(self) -> int:
        return self.num_samples
