"""Per-token KL estimators to the reference policy, and the KL-coefficient controllers (components chosen in YAML
as `model.init_args.kl.controller`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: Literal["k1", "k3"] = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π || π_ref) from log-probs of the sampled tokens (Schulman's k1 / k3).

    k1 = log π − log π_ref (unbiased, can be negative); k3 = (r − 1) − log r with r = π_ref / π (≥ 0, lower variance).
    Both are 0 where the two policies agree.
    """
    diff = logp - ref_logp
    if kind == "k1":
        return diff
    if kind == "k3":
        return torch.expm1(-diff) + diff
    raise ValueError(f"unknown KL estimator {kind!r}")


class KLController(ABC):
    """How β, the KL coefficient, moves between rollout batches. Stateless: the system holds the current β (and
    checkpoints it); a controller maps (β, the batch's mean sequence KL, sequences in the batch) to the next β."""

    coef: float
    """The initial β."""

    @abstractmethod
    def update(self, beta: float, current_kl: float, n_steps: int) -> float:
        """The next β."""


@dataclass(frozen=True)
class FixedKLController(KLController):
    """β stays at `coef` (the paper code: 0.4).

    Args:
        coef: β.
    """

    coef: float = 0.4

    def update(self, beta: float, current_kl: float, n_steps: int) -> float:
        return beta


@dataclass(frozen=True)
class AdaptiveKLController(KLController):
    """Ziegler et al. (2019): β ← β·(1 + clip(KL/target − 1, ±0.2)·n_steps/horizon).

    Args:
        coef: initial β.
        target: target KL per sequence.
        horizon: adaptation horizon in sequences.
    """

    coef: float = 0.4
    target: float = 6.0
    horizon: int = 10_000

    def update(self, beta: float, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        return beta * (1.0 + error * n_steps / self.horizon)
