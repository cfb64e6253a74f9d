"""Confidence intervals for rates over items (pure): the percentile bootstrap."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile-bootstrap interval of the mean of `values` (items resampled with replacement, seeded)."""
    if not values:
        return float("nan"), float("nan")
    x = torch.tensor(values, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    means = x[torch.randint(len(x), (resamples, len(x)), generator=g)].mean(1)
    tail = (1 - level) / 2
    lo, hi = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return lo, hi
