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
    """Generalised advantage estimation over the policy's own tokens.

    Args:
        rewards: (b, t) per-token rewards (KL penalty on every token, score on the last).
        values: (b, t) value estimates V(s_t).
        mask: (b, t) 1 for tokens the policy sampled. A 0 between two sampled tokens (a tool's output in a
            multi-turn episode) is context the policy did not choose: the recursion steps over it, so V of the
            next sampled token bootstraps the one before and credit flows back across tool outputs (not an episode
            end: verl's PR #6376 fixed the opposite). Positions after the last sampled token end the episode.

    Returns:
        (advantages, returns), both (b, t); returns = advantages + values; 0 where mask is 0.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    adv = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])  # advantage of the next sampled token
    next_v = torch.zeros_like(last)  # its value
    for t in reversed(range(values.size(1))):
        m = mask[:, t]
        here = rewards[:, t] + gamma * next_v - values[:, t] + gamma * lam * last
        adv[:, t] = here * m
        last = torch.where(m > 0, here, last)
        next_v = torch.where(m > 0, values[:, t], next_v)
    return adv, (adv + values) * mask


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """Per-token rewards (b, t): each sequence's score (b,) on its last sampled token (the last 1 of `mask`; tool
    outputs of an episode may follow it), minus `kl_coef` × `kl` on every token (the KL penalty in the reward)."""
    rewards = -kl_coef * kl if kl is not None and kl_coef else torch.zeros_like(mask, dtype=scores.dtype)
    positions = torch.arange(mask.size(1), device=mask.device)
    last = (mask * positions).argmax(1)
    rewards[torch.arange(len(scores)), last] += scores * (mask.sum(1) > 0)
    return rewards


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


def informative_rows(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Indices of the rows whose group (consecutive `group_size` rows) has scores that are not all equal: the
    only rows a group-relative advantage can move."""
    g = scores.view(-1, group_size)
    varied = (g != g[:, :1]).any(1)
    return varied.repeat_interleave(group_size).nonzero().squeeze(1)


def sequence_advantages_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n,) per-sequence advantages → (n, t) per response token; 0 at padding and after the stop token."""
    return advantages[:, None].to(mask.dtype if mask.is_floating_point() else torch.float32) * mask
