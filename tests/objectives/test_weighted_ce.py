"""Weighted-token cross-entropy: a hand-computed case and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.objectives.weighted_ce import weighted_cross_entropy


def test_weighted_ce_hand_computed():
    # vocab 2, two predicted positions; logits give p(target) = 0.5 at t=0 and sigmoid(2) at t=1
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 1, 0]])
    weights = torch.tensor([[0.0, 3.0, 1.0]])
    ce0, ce1 = math.log(2), -math.log(1 / (1 + math.exp(-2)))
    expected = (3 * ce0 + 1 * ce1) / 4
    assert weighted_cross_entropy(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(b=st.integers(1, 3), t=st.integers(2, 9), v=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_weighted_ce_invariants(b, t, v, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.3] = IGNORE_INDEX
    labels[0, -1] = 0  # at least one target
    ones = torch.ones(b, t)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    assert weighted_cross_entropy(logits, labels, ones).item() == pytest.approx(ref.item(), rel=1e-5)
    w = torch.rand(b, t, generator=g) + 0.1
    assert weighted_cross_entropy(logits, labels, 7 * w).item() == pytest.approx(
        weighted_cross_entropy(logits, labels, w).item(), rel=1e-5)  # scale-invariant
    masked = labels == IGNORE_INDEX
    w2 = w.clone()
    w2[masked] = 1000.0
    logits2 = logits.clone()
    logits2[:, :-1][masked[:, 1:]] = 50.0  # masked targets' logits and weights change nothing
    assert weighted_cross_entropy(logits2, labels, w2).item() == pytest.approx(
        weighted_cross_entropy(logits, labels, w).item(), rel=1e-5)
