"""Keys and values that several decoding rows share, kept once: a GRPO group's G samples of one prompt.

Without it, a prompt's KV cache is copied to each of its rows, and every decode step reads every copy: at the GRPO
shape (2 prompts of ~800 tokens x 8 samples) that is 16 copies of the prompt read per layer per step, where 2
would do. With it, a row's cache holds only its own tokens, and attention runs in two halves joined by their
log-sum-exp (`attend_with_prefix`): the queries of all rows that share a prefix attend over it together, once,
and each row attends over its own keys. (Distinct prompts that share a tool list, RoTBench's groups of 2 to 8,
measured slower this way: the two halves cost more per step in small operations than reading the copies does.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SharedPrefix:
    """Per layer, the keys and values of `P` prefixes (P x kv heads x length x dim, left-padded; `mask` P x length
    marks the real positions), and `owner`: the prefix each row continues."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor
    owner: torch.Tensor
    _slots: tuple[torch.Tensor, int] | None = field(default=None, repr=False)

    def select(self, rows: torch.Tensor) -> None:
        """Keep these rows (their prefixes stay, read once however many rows are left)."""
        self.owner = self.owner[rows]
        self._slots = None

    def row_mask(self) -> torch.Tensor:
        """Each row's prefix mask (rows x length)."""
        return self.mask[self.owner]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def slots(self) -> tuple[torch.Tensor, int]:
        """(each row's place among the rows of its prefix, the most rows any prefix has)."""
        if self._slots is None:
            order = torch.argsort(self.owner, stable=True)
            counts = torch.bincount(self.owner, minlength=self.mask.size(0))
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.empty_like(self.owner)
            slot[order] = torch.arange(len(order), device=order.device) - starts[self.owner[order]]
            self._slots = (slot, int(counts.max()))
        return self._slots


def attend_with_prefix(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, own_mask: torch.Tensor,
                       prefix: SharedPrefix, layer: int, scaling: float) -> torch.Tensor:
    """Attention of one new token per row (`query`: rows x heads x 1 x dim) over its prefix and then its own keys
    (`key`, `value`: rows x kv heads x own length x dim, `own_mask` rows x own length), as one softmax over both.
    Returns rows x 1 x heads x dim, as transformers' attention functions do."""
    rows, heads, q_len, dim = query.shape
    if q_len != 1:
        raise ValueError(f"attend_with_prefix decodes one token per row, got {q_len}")
    kv_heads = key.shape[1]
    q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # the query heads that read each kv head
    slot, most = prefix.slots()
    grouped = q.new_zeros(prefix.mask.size(0), kv_heads, most, heads // kv_heads, dim)
    grouped[prefix.owner, :, slot] = q
    grouped = grouped.flatten(2, 3)  # every row of a prefix reads it in one product
    out_prefix, lse_prefix = _softmax_attention(grouped, prefix.keys[layer], prefix.values[layer], prefix.mask,
                                                scaling)
    out_prefix = out_prefix.unflatten(2, (most, -1))[prefix.owner, :, slot]
    lse_prefix = lse_prefix.unflatten(2, (most, -1))[prefix.owner, :, slot]
    out_own, lse_own = _softmax_attention(q, key, value, own_mask, scaling)
    lse = torch.logaddexp(lse_prefix, lse_own)
    out = out_prefix * (lse_prefix - lse).exp()[..., None] + out_own * (lse_own - lse).exp()[..., None]
    return out.reshape(rows, 1, heads, dim).to(query.dtype)


def _softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                       scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax(q k^T * scaling) v, the log-sum-exp of each query's scores), masked keys left out; float32."""
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scaling
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    return torch.matmul((scores - lse[..., None]).exp().to(v.dtype), v).float(), lse
