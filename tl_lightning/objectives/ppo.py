"""PPO losses (pure functions over response tokens; shapes (b, t), mask 1 = response token).

Note [loss aggregation]: "token" averages over every response token of the minibatch (a long response weighs more;
PPO's usual masked mean, DAPO / Dr. GRPO's recommendation); "sequence" averages each response's tokens first and
then the responses (the original GRPO objective: every response weighs the same).
"""

from __future__ import annotations

from typing import Literal

import torch

from tl_lightning.objectives.advantages import masked_mean

Aggregation = Literal["token", "sequence"]


def aggregate(x: torch.Tensor, mask: torch.Tensor, how: Aggregation = "token") -> torch.Tensor:
    """Mean of a per-token quantity over response tokens (Note [loss aggregation])."""
    if how == "token":
        return masked_mean(x, mask)
    if how == "sequence":
        per_sequence = masked_mean(x, mask, dim=1)
        return per_sequence[mask.sum(1) > 0].mean() if bool((mask.sum(1) > 0).any()) else x.sum() * 0
    raise ValueError(f"unknown aggregation {how!r}")


def data_parallel_share(local: torch.Tensor, total: torch.Tensor, world_size: int) -> torch.Tensor:
    """Factor for a rank's mean loss so that data parallelism's average of the ranks' gradients is the gradient of
    the mean over all ranks' tokens (or responses), not the mean of the ranks' means: `local` is this rank's
    denominator (token or response count), `total` the sum over ranks. Ranks with 3 and 5 tokens: the factors
    2·3/8 and 2·5/8 turn ½(m₀ + m₁) into (Σ₀ + Σ₁)/8."""
    return local * world_size / total.clamp_min(1.0)


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip: float = 0.2, how: Aggregation = "token"
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate. All inputs (b, t). Returns (loss, clip fraction, approx KL old→new).

    loss = mean(max(−A·r, −A·clip(r, 1−ε, 1+ε))), r = exp(logp − old_logp); with r ≡ 1 it is −mean(A).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = aggregate(torch.maximum(unclipped, clipped), mask, how)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(0.5 * (logp - old_logp) ** 2, mask)
    return loss, clipfrac.detach(), approx_kl.detach()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5·mean(max((V − R)², (V_clip − R)²)), V_clip = old_V + clip(V − old_V, ±ε). Returns (loss, clip fraction)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    a, b = (values - returns) ** 2, (v_clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(a, b), mask), masked_mean((b > a).float(), mask).detach()
