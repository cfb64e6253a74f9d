"""Masked statistics, whitening and GAE (pure functions; shapes (b, t), mask 1 = response token)."""

from __future__ import annotations

from collections.abc import Callable

import torch

ReduceSum = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over data-parallel ranks


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp_min(1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp_min(1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    return var * n / (n - 1).clamp_min(1.0) if unbiased else var


def whiten(x: torch.Tensor, mask: torch.Tensor, keep_mean: bool = False, eps: float = 1e-8,
           reduce_sum: ReduceSum | None = None) -> torch.Tensor:
    """(x - mean) / std over masked positions; `keep_mean` adds the mean back. Masked-out positions become 0.

    `reduce_sum` sums a tensor over data-parallel ranks: the statistics are then those of all ranks' positions
    together, as one process would compute them on the union batch."""
    if reduce_sum is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        m = mask.to(x.dtype)
        n, total = reduce_sum(m.sum()), reduce_sum((x * m).sum())
        mean = total / n.clamp_min(1.0)
        var = reduce_sum(((x - mean) ** 2 * m).sum()) / (n - 1).clamp_min(1.0)
    out = (x - mean) * torch.rsqrt(var + eps)
    if keep_mean:
        out = out + mean
    return out * mask.to(x.dtype)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens.

    Args:
        rewards: (b, t) per-token rewards (KL penalty on every token, score on the last).
        values: (b, t) value estimates V(s_t).
        mask: (b, t) 1 for response tokens; positions after the last response token are 0 (the episode ended).

    Returns:
        (advantages, returns), both (b, t); returns = advantages + values; 0 where mask is 0.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    t_len = values.size(1)
    for t in reversed(range(t_len)):
        next_v = values[:, t + 1] if t + 1 < t_len else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def group_advantages(scores: torch.Tensor, group_size: int, baseline: str = "mean", scale_by_std: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:
    """Critic-free advantages of `scores` (n,), n = prompts × group_size, consecutive samples of one prompt.

    baseline "mean" (GRPO): A = s − mean(group), divided by std(group) + eps when `scale_by_std` (Dr. GRPO drops
    that scaling); baseline "leave_one_out" (RLOO): A = s − mean(the other samples of the group). A group whose
    scores are all equal gets A = 0 (no NaN), so it teaches nothing.
    """
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}")
    g = scores.float().view(-1, group_size)
    if baseline == "leave_one_out":
        if group_size < 2:
            raise ValueError("a leave-one-out baseline needs group_size >= 2")
        adv = (g - (g.sum(1, keepdim=True) - g) / (group_size - 1))
    elif baseline == "mean":
        adv = g - g.mean(1, keepdim=True)
        if scale_by_std and group_size > 1:
            std = g.std(1, keepdim=True, unbiased=True)
            adv = torch.where(std > 0, adv / (std + eps), torch.zeros_like(adv))  # an all-equal group: 0, never NaN
    else:
        raise ValueError(f"unknown baseline {baseline!r}")
    return adv.reshape(-1).to(scores.dtype)


def sequence_advantages_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n,) per-sequence advantages → (n, t) per response token; 0 at padding and after the stop token."""
    return advantages[:, None].to(mask.dtype if mask.is_floating_point() else torch.float32) * mask
