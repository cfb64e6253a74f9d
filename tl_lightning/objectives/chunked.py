"""The output head applied a chunk of positions at a time: token log-probs, entropy and argmax without ever holding
full-vocabulary fp32 logits for a whole batch.

Note [chunked head]: the caller passes only the positions it needs (PPO: the response; SFT: the trained tokens),
flattened to (n, h). Each chunk's logits live only inside `_chunk`; with autograd on and `recompute`, the chunk is
checkpointed, so backward recomputes its logits instead of keeping them. Peak logits memory is chunk × vocab × 4
bytes, against batch × sequence × vocab × 4 (plus its log-softmax and gradient) for full-vocabulary logits of every
position. The results equal a full-logits computation's up to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint


class HeadStats(NamedTuple):
    """Per position: log-prob of the target (n,), entropy of the distribution (n,) or None, argmax == target (n,)."""

    logp: torch.Tensor
    entropy: torch.Tensor | None
    correct: torch.Tensor


def sampling_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The logits of the distribution tokens are sampled from at `temperature`: the one definition that the sampler
    (`models.generation.SamplingProcessor`) and the RL learner (`head_stats`) both apply."""
    return logits if temperature == 1.0 else logits / temperature


def _chunk(hidden: torch.Tensor, targets: torch.Tensor, head: Callable, with_entropy: bool, temperature: float):
    logits = sampling_logits(head(hidden).float(), temperature)
    lse = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - lse
    correct = logits.argmax(-1) == targets
    if not with_entropy:
        return logp, correct
    probs = torch.softmax(logits, dim=-1)
    entropy = lse - (probs * logits).sum(-1)
    return logp, correct, entropy


def head_stats(hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], targets: torch.Tensor,
               chunk_size: int | None = 1024, with_entropy: bool = False, temperature: float = 1.0,
               recompute: bool = True) -> HeadStats:
    """Log-probs of `targets` under `head(hidden)`, `chunk_size` positions at a time (None: all at once).

    Args:
        hidden: (n, h) final hidden states, each predicting the target at the same index.
        head: the output projection (hidden → vocabulary logits), e.g. the model's `lm_head`.
        targets: (n,) token ids.
        chunk_size: positions per chunk.
        with_entropy: also return the entropy of each position's distribution (no gradient flows through it).
        temperature: the distribution is softmax(logits / temperature) (RL: the rollouts' sampling temperature).
        recompute: with autograd on, checkpoint each chunk (backward recomputes its logits); False keeps every
            chunk's logits for backward: no second head matmul, and no memory cost when a single chunk's backward
            follows right after it (SFT with `loss_chunk_size: null`).
    """
    n = hidden.size(0)
    size = max(1, chunk_size or n)  # at least 1: range() needs a step even with no positions
    checkpointed = recompute and torch.is_grad_enabled() and hidden.requires_grad
    parts = []
    for start in range(0, n, size):
        args = (hidden[start:start + size], targets[start:start + size], head, with_entropy, temperature)
        parts.append(checkpoint(_chunk, *args, use_reentrant=False) if checkpointed else _chunk(*args))
    if not parts:
        # (0,) but on the graph: a loss summed from it back-propagates zeros instead of failing (a micro-batch
        # without trained tokens), and the decoder's parameters still get (zero) gradients
        empty = hidden.float().sum(-1) * 0
        return HeadStats(empty, empty.detach() if with_entropy else None,
                         torch.zeros(0, dtype=torch.bool, device=hidden.device))
    logp = torch.cat([p[0] for p in parts])
    correct = torch.cat([p[1] for p in parts])
    entropy = torch.cat([p[2] for p in parts]).detach() if with_entropy else None
    return HeadStats(logp, entropy, correct)
