"""A KV cache that appends in place: what `DecodeLoop` decodes on."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class RoomyLayer(DynamicLayer):
    """transformers' `DynamicLayer` whose keys and values live in a buffer with room for the tokens still to come,
    so appending a token writes in place. The stock layer concatenates, copying every layer's whole cache at every
    step (a third of a CPU decode step at the GRPO shape, profiled)."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def lazy_initialization(self, key_states, value_states):
        super().lazy_initialization(key_states, value_states)
        self._k = self._v = None
        self._n = 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        t = key_states.shape[-2]
        if self._k is None or self._n + t > self._k.shape[-2]:
            self._k = self._grow(self._k, key_states, self._n + t + self.room)
            self._v = self._grow(self._v, value_states, self._n + t + self.room)
        self._k[..., self._n:self._n + t, :] = key_states
        self._v[..., self._n:self._n + t, :] = value_states
        self._n += t
        self.keys, self.values = self._k[..., :self._n, :], self._v[..., :self._n, :]
        return self.keys, self.values

    def adopt(self, keys: torch.Tensor, values: torch.Tensor, n: int) -> None:
        """Take `keys` and `values` (rows x heads x positions x dim) as this layer's buffers, the first `n`
        positions filled."""
        self.lazy_initialization(keys[..., :n, :], values[..., :n, :])
        self._k, self._v, self._n = keys, values, n
        self.keys, self.values = keys[..., :n, :], values[..., :n, :]

    def _grow(self, old: torch.Tensor | None, new: torch.Tensor, size: int) -> torch.Tensor:
        buffer = new.new_empty(*new.shape[:2], size, new.shape[-1])
        if old is not None and self._n:
            buffer[..., :self._n, :] = old[..., :self._n, :]
        return buffer

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if getattr(self, "_k", None) is None:  # nothing cached yet (rows that continue a shared prefix)
            return
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[..., :self._n, :], self._v[..., :self._n, :]


def roomy_cache(config, room: int) -> DynamicCache:
    """A `DynamicCache` whose full-attention layers append in place with `room` spare positions (other layer
    types, e.g. sliding windows, keep their own class)."""
    cache = DynamicCache(config=config)
    cache.layers = [RoomyLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def bytes_per_row_token(cache: DynamicCache) -> int:
    """Bytes that one row's keys and values take per cached token, over all layers."""
    return key_bytes_per_token([layer.keys for layer in cache.layers])


def key_bytes_per_token(keys: list[torch.Tensor]) -> int:
    """Bytes of one token's keys and values, given each layer's keys (rows x heads x positions x dim)."""
    return sum(2 * k.element_size() * k.shape[1] * k.shape[3] for k in keys)


def left_padded_cache(config, caches: list[DynamicCache], room: int) -> DynamicCache:
    """One `roomy_cache` holding the rows of `caches` (one row each, of any lengths) left-padded to the longest,
    padding zeroed: how prompts prefilled one at a time join a batch. Each row is copied once, straight into the
    roomy buffers. Every layer must attend to the full past."""
    longest = max(c.get_seq_length() for c in caches)
    out = roomy_cache(config, room)
    for i, layer in enumerate(out.layers):
        layer.adopt(_left_padded([c.layers[i].keys for c in caches], longest + room),
                    _left_padded([c.layers[i].values for c in caches], longest + room), longest)
    return out


def _left_padded(rows: list[torch.Tensor], size: int) -> torch.Tensor:
    """A buffer of `size` positions holding `rows` (each 1 x heads x n x dim) right-aligned at the longest row's
    end, zeros before; the positions after are left for decoding."""
    longest = max(r.shape[-2] for r in rows)
    buffer = rows[0].new_empty(len(rows), rows[0].shape[1], size, rows[0].shape[3])
    for i, r in enumerate(rows):
        n = r.shape[-2]
        buffer[i, :, :longest - n].zero_()
        buffer[i, :, longest - n:longest] = r[0]
    return buffer
