"""Learning-rate schedules for `lr_scheduler:` (LightningCLI `LRSchedulerCallable`s), shared by SFT and RL.

Both take their warmup as a fraction of the run's optimizer steps (< 1) or a number of steps (>= 1). The system
tells a schedule the run's total steps through `set_total_steps` once the trainer knows it.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warmup from 0 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_steps(warmup: float, total: int) -> int:
    return int(warmup * total) if warmup < 1 else int(warmup)


class _Multiplier:
    """The LR multiplier as a plain object, so `LambdaLR.state_dict` saves (and resume restores) its fields."""

    def __init__(self, warmup: float, cosine: bool, min_ratio: float, total: int) -> None:
        self.warmup, self.cosine, self.min_ratio, self.total = warmup, cosine, min_ratio, total

    def __call__(self, step: int) -> float:
        warm = warmup_steps(self.warmup, self.total)
        if self.cosine:
            return cosine_with_warmup(step, warm, self.total, self.min_ratio)
        return min(1.0, (step + 1) / warm) if warm else 1.0


class _WarmupSchedule(LambdaLR):
    def __init__(self, optimizer: torch.optim.Optimizer, warmup: float, cosine: bool, min_ratio: float,
                 total_steps: int | None, last_epoch: int = -1) -> None:
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        # not an attribute of the scheduler: its __dict__ is the checkpointed state and must stay plain data
        super().__init__(optimizer, _Multiplier(warmup, cosine, min_ratio, total_steps or 1), last_epoch)

    def set_total_steps(self, total: int) -> None:
        """Called by the system with the trainer's `estimated_stepping_batches`; re-applies the current LR."""
        multiplier = self.lr_lambdas[0]
        multiplier.total = max(1, int(total))
        step = max(0, self.last_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * multiplier(step)
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class WarmupCosine(_WarmupSchedule):
    """Linear warmup, then cosine decay to `min_ratio` × the base LR at the end of the run (paper SFT: 1% warmup).

    Args:
        optimizer: set by the system.
        warmup: warmup length: a fraction of the run's optimizer steps (< 1) or a step count (>= 1).
        min_ratio: final LR as a fraction of the base LR.
        total_steps: the run's optimizer steps (default: the trainer's estimate, set by the system).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: float = 0.03, min_ratio: float = 0.0,
                 total_steps: int | None = None) -> None:
        super().__init__(optimizer, warmup, True, min_ratio, total_steps)


class WarmupConstant(_WarmupSchedule):
    """Linear warmup, then the base LR (the paper's PPO: 100 warmup steps).

    Args:
        optimizer: set by the system.
        warmup: warmup length: a fraction of the run's optimizer steps (< 1) or a step count (>= 1).
        total_steps: the run's optimizer steps (needed only for a fractional warmup; set by the system).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: float = 0.0, total_steps: int | None = None) -> None:
        super().__init__(optimizer, warmup, False, 1.0, total_steps)


def build_schedule(factory, optimizer: torch.optim.Optimizer, total_steps: int, default):
    """`factory(optimizer)` (an `LRSchedulerCallable`, or `default` when None), told the run's total steps."""
    sched = (factory or default)(optimizer)
    if hasattr(sched, "set_total_steps"):
        sched.set_total_steps(total_steps)
    return sched
