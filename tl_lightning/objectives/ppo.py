"""PPO losses (pure functions; masked token means over response tokens)."""

from __future__ import annotations

import torch

from tl_lightning.objectives.advantages import masked_mean


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate. All inputs (b, t). Returns (loss, clip fraction, approx KL old→new).

    loss = mean(max(−A·r, −A·clip(r, 1−ε, 1+ε))), r = exp(logp − old_logp); with r ≡ 1 it is −mean(A).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(0.5 * (logp - old_logp) ** 2, mask)
    return loss, clipfrac.detach(), approx_kl.detach()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5·mean(max((V − R)², (V_clip − R)²)), V_clip = old_V + clip(V − old_V, ±ε). Returns (loss, clip fraction)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    a, b = (values - returns) ** 2, (v_clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(a, b), mask), masked_mean((b > a).float(), mask).detach()
