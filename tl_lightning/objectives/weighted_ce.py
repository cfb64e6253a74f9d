"""Weighted-token cross-entropy (PKT's objective, paper.md §4): loss = Σ w·CE / Σ w over labelled tokens.

Here from full-vocabulary logits (benchmarks, analysis); `SFTSystem._losses` trains on the same sums computed
from the final hidden states, with the output head applied to trained positions only.

Note [label shift]: `labels` and `weights` are aligned with `input_ids` (unshifted); they are shifted once, so
position t's logits predict token t+1.

Note [weight normalisation]: the denominator is Σ w over every trained token of an *optimizer step*: all
micro-batches of gradient accumulation and all data-parallel ranks, so the step's gradient does not depend on how
the step's examples are split into micro-batches or processes. The system returns Σ w·CE per micro-batch
(`SFTSystem._losses`) and divides the accumulated gradient by the step's Σ w just before the optimizer step
(`SFTSystem.on_before_optimizer_step`). With all weights 1 this is token-mean cross-entropy over the step. The
paper code (batch size 1, one copy per turn) normalises per turn instead: `normalization: turn` in the datamodule
scales each turn's weights to sum to 1, which makes the same denominator the number of trained turns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tl_lightning.core.constants import IGNORE_INDEX


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token CE of next-token prediction.

    Args:
        logits: (b, t, v) unshifted logits.
        labels: (b, t) unshifted labels with IGNORE_INDEX at positions without a target.

    Returns:
        (b, t-1) CE for predicting labels[:, 1:]; 0 where the label is ignored.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
                         ignore_index=IGNORE_INDEX, reduction="none")
    return ce.view(shift_labels.shape)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ w·CE / Σ w over positions whose label is not IGNORE_INDEX.

    Args:
        logits: (b, t, v) unshifted.
        labels: (b, t) unshifted, IGNORE_INDEX where masked.
        weights: (b, t) aligned with labels; values at masked positions are ignored.

    Returns:
        Scalar loss (0 with no labelled token, keeping the graph connected).
    """
    ce = token_cross_entropy(logits, labels)
    w = weights[:, 1:].to(ce.dtype) * (labels[:, 1:] != IGNORE_INDEX)
    return (ce * w).sum() / w.sum().clamp_min(1e-8)
