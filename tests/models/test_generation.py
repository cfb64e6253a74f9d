"""Batched generation helpers: left padding (long prompts keep their tail) and cutting at the first EOS."""

import torch

from tl_lightning.models.generation import cut_at_eos, left_pad


def test_left_pad_and_cut():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, _ = left_pad([[1, 2, 3, 4]], pad_id=0, max_length=2)
    assert ids.tolist() == [[3, 4]]  # long prompts keep their tail
    assert cut_at_eos(torch.tensor([[4, 2, 9], [4, 5, 6]]), stop_ids=2) == [[4, 2], [4, 5, 6]]
