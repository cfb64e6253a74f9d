"""The rows `DecodeLoop` decodes together: one or more prefilled parts (buckets), each with its own KV cache and
attention mask, never padded to one length.

The matrix products over the weights run once per step for all the rows of all the parts, and attention runs per
part, on the part's own cache and mask (`_parts_attention`, switched on for the step only). Before this, buckets
decoded together had their caches copied into one, left-padded to the longest row: the copy cost 10 s of a
RoTBench evaluation and every row attended over the padding (benchmarks/engine_profile.py)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from tl_lightning.models.kv_cache import bytes_per_row_token, key_bytes_per_token
from tl_lightning.models.shared_prefix import SharedPrefix, attend_with_prefix

PARTS_ATTENTION = "tl_lightning_parts"
"""The attention implementation a multi-part decode step runs under (registered below)."""


@dataclass
class Part:
    """Rows prefilled together: their KV cache and its attention mask. With a `prefix`, the rows continue shared
    keys and values kept once (`models/shared_prefix.py`), and `cache` and `mask` hold only each row's own."""

    cache: DynamicCache
    mask: torch.Tensor
    prefix: SharedPrefix | None = None

    def __len__(self) -> int:
        return self.mask.size(0)

    def nbytes(self, new_tokens: int) -> int:
        """The cache's size once `new_tokens` more are decoded."""
        if self.prefix is None:
            return len(self) * (self.mask.size(1) + new_tokens) * bytes_per_row_token(self.cache)
        own = len(self) * (self.mask.size(1) + new_tokens) * key_bytes_per_token(self.prefix.keys)  # own: empty yet
        return own + self.prefix.nbytes()

    def select(self, rows: torch.Tensor) -> None:
        self.cache.batch_select_indices(rows)
        self.mask = self.mask[rows]
        if self.prefix is not None:
            self.prefix.select(rows)

    def positions(self) -> torch.Tensor:
        """Each row's position ids, the prefix's counted."""
        if self.prefix is None:
            return positions_of(self.mask)
        return positions_of(torch.cat([self.prefix.row_mask(), self.mask], dim=1))[:, -self.mask.size(1):]


class DecodeBatch:
    """Rows decoding together, stacked in part order. One part decodes exactly as transformers would (one forward,
    the model's own mask); several decode through `PartsCache`."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def forward(self, model, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits after one new token per row (`ids`: rows x 1), whose keys and values join the caches."""
        for p in self.parts:
            p.mask = torch.cat([p.mask, p.mask.new_ones(len(p), 1)], dim=1)
        if len(self.parts) == 1 and self.parts[0].prefix is None:
            return forward(model, ids, self.parts[0].mask, self.parts[0].cache)
        positions = torch.cat([p.positions()[:, -1:] for p in self.parts])
        cache = PartsCache(self.parts, [None if p.prefix is not None else _step_mask(model, p) for p in self.parts],
                           model.config._attn_implementation)
        with _attention(model.config, PARTS_ATTENTION):
            return model(input_ids=ids, position_ids=positions, past_key_values=cache, use_cache=True,
                         logits_to_keep=1).logits[:, -1]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these rows (indices into the stacked rows, ascending); parts left empty are dropped."""
        kept, start = [], 0
        for part in self.parts:
            n = len(part)
            mine = rows[(rows >= start) & (rows < start + n)] - start
            if len(mine) < n and len(mine):
                part.select(mine)
            if len(mine):
                kept.append(part)
            start += n
        self.parts = kept


class PartsCache:
    """The caches of several parts behind one `update`: each part's rows append to the part's own cache, and the
    attention function gets the per-part keys and values (`_PerPart`) with the mask each part's step needs."""

    def __init__(self, parts: list[Part], masks: list, implementation: str) -> None:
        self.parts, self.masks, self.implementation = parts, masks, implementation

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        keys, values, start = [], [], 0
        for part in self.parts:
            n = len(part)
            k, v = part.cache.update(key_states[start:start + n], value_states[start:start + n], layer_idx)
            keys.append(k)
            values.append(v)
            start += n
        return _PerPart(keys, self), _PerPart(values, self)


class _PerPart(list):
    """One layer's keys (or values), one tensor per part of `owner`."""

    def __init__(self, tensors: list[torch.Tensor], owner: PartsCache) -> None:
        super().__init__(tensors)
        self.owner = owner


def _parts_attention(module, query: torch.Tensor, key: _PerPart, value: _PerPart, attention_mask, **kwargs):
    """Attention of each part's rows over the part's own keys and values, with the implementation (and mask) the
    model would have used for that part alone."""
    attend = ALL_ATTENTION_FUNCTIONS[key.owner.implementation]
    outputs, start = [], 0
    for k, v, mask, part in zip(key, value, key.owner.masks, key.owner.parts):
        n = k.size(0)
        if part.prefix is not None:
            outputs.append(attend_with_prefix(query[start:start + n], k, v, part.mask, part.prefix,
                                              module.layer_idx, kwargs.get("scaling") or module.scaling))
        else:
            outputs.append(attend(module, query[start:start + n], k, v, mask, **kwargs)[0])
        start += n
    return torch.cat(outputs), None


AttentionInterface.register(PARTS_ATTENTION, _parts_attention)


def can_decode_in_parts(model) -> bool:
    """Whether `DecodeBatch` can decode this model in parts: every layer attends to the whole past (one causal
    mask serves them all) and its attention is sdpa, the one tested (flash-attention reads the whole batch's
    position ids from its arguments to find packed sequences)."""
    return model.config._attn_implementation == "sdpa" and attends_to_full_past(model)


def attends_to_full_past(model) -> bool:
    """Whether every layer of the model attends to the whole past (no sliding windows or chunks)."""
    return all(t == "full_attention" for t in getattr(model.config, "layer_types", None) or ["full_attention"])


def forward(model, ids: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
    """Next-token logits after `ids`, whose keys and values join `cache`; `mask` covers the cache and `ids`."""
    return model(input_ids=ids, attention_mask=mask, position_ids=positions_of(mask)[:, -ids.size(1):],
                 past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows, as transformers' generate computes them (padding gets 1, masked anyway)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _step_mask(model, part: Part):
    """The attention mask transformers builds for one decode step of this part alone (None where it needs none)."""
    embeds = torch.empty(len(part), 1, 1, dtype=model.dtype, device=part.mask.device)  # its shape and dtype count
    return create_causal_mask(config=model.config, inputs_embeds=embeds, attention_mask=part.mask,
                              past_key_values=part.cache, position_ids=positions_of(part.mask)[:, -1:])


@contextmanager
def _attention(config, implementation: str):
    """Run the model's attention through `implementation` for the duration (the modules read it per call)."""
    before = config._attn_implementation
    config._attn_implementation = implementation
    try:
        yield
    finally:
        config._attn_implementation = before
