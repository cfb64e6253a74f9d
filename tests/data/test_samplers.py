"""Length-grouped sampler: every example once per epoch, less padding, identical global batches on 1 or N ranks."""

import random

from tl_lightning.data.samplers import LengthGroupedSampler


def _padding(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_covers_epoch_and_reduces_padding():
    rng = random.Random(0)
    lengths = [rng.randint(50, 1000) for _ in range(400)]
    s = LengthGroupedSampler(lengths, batch_size=4, seed=1, group=10)
    order = list(s)
    assert sorted(order) == list(range(400)) and len(s) == 400
    grouped = [order[i:i + 4] for i in range(0, 400, 4)]
    plain = [list(range(400))[i:i + 4] for i in range(0, 400, 4)]
    assert _padding(grouped, lengths) < 0.2 * _padding(plain, lengths)
    s.set_epoch(1)
    assert list(s) != order  # a new order each epoch


def test_ranks_slice_the_same_global_batches():
    lengths = [random.Random(i).randint(1, 500) for i in range(38)]  # 9 global batches of 4 and a partial one of 2
    one = LengthGroupedSampler(lengths, batch_size=4, num_replicas=1, rank=0, seed=3)
    two = [LengthGroupedSampler(lengths, batch_size=2, num_replicas=2, rank=r, seed=3) for r in range(2)]
    assert one.global_batches() == two[0].global_batches() == two[1].global_batches()
    r0, r1 = list(two[0]), list(two[1])
    merged = [x for k in range(0, len(r0), 2) for x in r0[k:k + 2] + r1[k:k + 2]]
    assert merged == list(one)  # global batch k = rank 0's slice + rank 1's slice
    assert len(r0) == len(r1) == len(two[0])


def test_every_example_once_when_the_batch_does_not_divide_the_data():
    """37 examples, batch 4: nine full batches in a shuffled order, then the partial one. Before, the epoch was
    padded to 40 by repeating three examples (trained twice per epoch on one process)."""
    from torch.utils.data import DataLoader

    lengths = [random.Random(i).randint(1, 500) for i in range(37)]
    s = LengthGroupedSampler(lengths, batch_size=4, seed=3)
    order = list(s)
    assert sorted(order) == list(range(37)) and len(s) == 37
    batches = list(DataLoader(list(range(37)), batch_size=4, sampler=s))
    assert [len(b) for b in batches] == [4] * 9 + [1]
    assert [x for b in batches for x in b.tolist()] == order
    two = [list(LengthGroupedSampler(lengths, batch_size=2, num_replicas=2, rank=r, seed=3)) for r in range(2)]
    assert len(two[0]) == len(two[1]) == 19  # DDP: one example repeats so that both ranks get 19
    assert sorted(set(two[0] + two[1])) == list(range(37))
