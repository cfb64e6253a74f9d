"""Advantage estimators (components chosen in YAML as `model.init_args.advantage`).

* `GAE` — PPO's generalised advantage estimation over the KL-penalised token rewards, with a critic's values
  (the paper's IRM).
* `GRPO` — critic-free: each prompt is sampled `group_size` times and a response's advantage is its sequence
  reward against its group's mean (divided by the group's std, unless `scale_by_std: false` as in Dr. GRPO).
* `RLOO` — critic-free, REINFORCE leave-one-out: against the mean of the *other* samples of the group.

An estimator maps the rollout's token rewards (the rule score on the last response token, minus the KL penalty
when it is in the reward) and the critic's values to per-token advantages and, for GAE, the critic's returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from tl_lightning.objectives.advantages import ReduceSum, gae, group_advantages, sequence_advantages_to_tokens, whiten


@dataclass(frozen=True)
class AdvantageEstimator(ABC):
    """Per-token advantages of a rollout batch."""

    group_size: int = 1
    """Samples per prompt (the datamodule repeats each prompt this many times in a row; linked from here)."""
    needs_critic: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {self.group_size}")

    @abstractmethod
    def estimate(self, rewards: torch.Tensor, values: torch.Tensor | None, mask: torch.Tensor,
                 reduce_sum: ReduceSum | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(advantages (b, t), returns (b, t) or None) from token rewards (b, t), values (b, t) or None, and the
        response mask (b, t). `reduce_sum` sums over data-parallel ranks, for statistics over the whole batch
        (groups never span ranks: a rank holds whole groups)."""


@dataclass(frozen=True)
class GAE(AdvantageEstimator):
    """Generalised advantage estimation with a critic (the paper: γ 1, λ 0.95, no whitening).

    Args:
        group_size: samples per prompt (1: the paper).
        gamma: discount.
        lam: GAE λ.
        whiten: normalise the advantages over the batch.
    """

    gamma: float = 1.0
    lam: float = 0.95
    whiten: bool = False
    needs_critic: ClassVar[bool] = True

    def estimate(self, rewards, values, mask, reduce_sum=None):
        adv, returns = gae(rewards, values, mask, self.gamma, self.lam)
        return (whiten(adv, mask, reduce_sum=reduce_sum) if self.whiten else adv), returns


@dataclass(frozen=True)
class GRPO(AdvantageEstimator):
    """Group-relative advantages, no critic (Shao et al. 2024; `scale_by_std: false` is Dr. GRPO, Liu et al. 2025).

    Args:
        group_size: samples per prompt (at least 2).
        scale_by_std: divide by the group's reward std.
        eps: added to the std.
    """

    group_size: int = 4
    scale_by_std: bool = True
    eps: float = 1e-4

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"GRPO compares samples of one prompt: group_size must be >= 2, got {self.group_size}")

    def estimate(self, rewards, values, mask, reduce_sum=None):
        adv = group_advantages(rewards.sum(1), self.group_size, "mean", self.scale_by_std, self.eps)
        return sequence_advantages_to_tokens(adv, mask), None


@dataclass(frozen=True)
class RLOO(AdvantageEstimator):
    """REINFORCE leave-one-out advantages, no critic (Ahmadian et al. 2024).

    Args:
        group_size: samples per prompt (at least 2).
    """

    group_size: int = 4

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"RLOO needs the other samples of a prompt: group_size >= 2, got {self.group_size}")

    def estimate(self, rewards, values, mask, reduce_sum=None):
        adv = group_advantages(rewards.sum(1), self.group_size, "leave_one_out")
        return sequence_advantages_to_tokens(adv, mask), None
