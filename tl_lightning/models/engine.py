"""Rollout engines: how a batch of tokenized prompts becomes responses. One component (`class_path`), used by RL
rollouts (`PolicyRunner.sample`) and by evaluation (`evaluation.predict`).

* `HFGenerate`: transformers' `generate` on the whole batch (the path before the engine existed). Every row is
  prefilled, padded to the longest prompt, and decoded until the last row stops.
* `DecodeLoop` (default): our own decode loop on the model's KV cache, with the levers measured in
  `benchmarks/rollout.py`:
  - **prefix sharing**: identical prompts (a GRPO group's G samples of one prompt) are prefilled once and their
    KV cache is expanded G times; prefill is most of a CPU rollout's time;
  - **length buckets**: prompts are prefilled shortest first, at most `prefill_tokens` (padded) tokens at a time,
    so a short prompt never waits in a batch padded to the longest one;
  - **finished rows leave**: a row that emitted a stop token is dropped from the decode batch and its cache;
  - **in-place KV cache**: appending a token writes into spare room instead of concatenating the whole cache;
  - **a dense sampling copy** (on CPU by default): the policy with its base dequantized and LoRA merged, as a
    plain model, rebuilt after every update (`policy_changed`); RL still learns from the policy's own log-probs.

Both sample from the same distribution (Note [sampling distribution] in generation.py): temperature applied with
`objectives.chunked.sampling_logits`, top-k / top-p (evaluation only) after it, and log q recorded per sampled
token. Greedy outputs are token-identical across engines up to float rounding of a differently shaped batch
(tested on the tiny model and SmolLM2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tl_lightning.models.dense_copy import DenseCopy, dense_bytes
from tl_lightning.models.generation import Generated, GenerationSettings, _as_ids, generate_responses, left_pad
from tl_lightning.objectives.chunked import sampling_logits


class RolloutEngine(ABC):
    """Generates responses for tokenized prompts: the interface RL and evaluation call."""

    @abstractmethod
    def generate(self, model, prompts: list[list[int]], pad_id: int, stop_ids: int | Sequence[int],
                 settings: GenerationSettings) -> Generated:
        """Per prompt, the response token ids cut after the first stop token (kept) and, when sampling, log q of
        each sampled token. Sampling draws from torch's global generator (callers seed it)."""

    def policy_changed(self) -> None:
        """The policy's weights changed (an RL update): anything derived from them must be rebuilt."""


class HFGenerate(RolloutEngine):
    """transformers' `generate` on the whole batch, left-padded (the reference path)."""

    def generate(self, model, prompts, pad_id, stop_ids, settings):
        return generate_responses(model, prompts, pad_id, stop_ids, settings)


class DecodeLoop(RolloutEngine):
    """Our decode loop: shared prefixes, length buckets, finished rows leave the batch.

    Args:
        share_prefixes: prefill each distinct prompt once and expand its KV cache to its copies.
        prefill_tokens: prompts prefilled together, shortest first, up to this many padded tokens (at least one
            prompt); each bucket is then decoded on its own. None: the whole batch at once.
        dense_copy: generate with a dense copy of the policy (`models/dense_copy.py`: base dequantized, LoRA
            merged, rebuilt after every policy update): "float32" / "bfloat16"; "none"; "auto" (default): a float32
            copy on CPU when it fits `dense_max_gib` (measured fastest there: benchmarks/rollout.py), none on GPU
            (not measured yet; a 7B copy would not fit a 24 GB card beside training).
        dense_max_gib: the copy's memory budget: an explicit dtype over it is refused (one line), "auto" skips it.
    """

    def __init__(self, share_prefixes: bool = True, prefill_tokens: int | None = 8192,
                 dense_copy: Literal["auto", "none", "float32", "bfloat16"] = "auto",
                 dense_max_gib: float | None = 2.0) -> None:
        if prefill_tokens is not None and prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1 or null, got {prefill_tokens}")
        self.share_prefixes, self.prefill_tokens = share_prefixes, prefill_tokens
        self.dense_copy, self.dense_max_gib = dense_copy, dense_max_gib
        self._copy: DenseCopy | None = None
        self._copy_of: int | None = None  # id() of the policy the copy was built from, None when stale

    def policy_changed(self) -> None:
        self._copy_of = None

    def sampling_model(self, model):
        """The model to generate with: `model` itself, or its dense copy (rebuilt when stale)."""
        dtype = self._copy_dtype(model)
        if dtype is None:
            return model
        if self._copy is None:
            self._copy = DenseCopy(dtype, self.dense_max_gib)
        if self._copy_of != id(model):
            self._copy.refresh(model)
            self._copy_of = id(model)
        return self._copy.model

    def _copy_dtype(self, model) -> torch.dtype | None:
        if self.dense_copy == "none":
            return None
        if self.dense_copy != "auto":
            return getattr(torch, self.dense_copy)
        on_cpu = next(model.parameters()).device.type == "cpu"
        fits = self.dense_max_gib is None or dense_bytes(model, torch.float32) <= self.dense_max_gib * 2**30
        return torch.float32 if on_cpu and fits else None

    @torch.no_grad()
    def generate(self, model, prompts, pad_id, stop_ids, settings):
        model = self.sampling_model(model)
        cut = [p[-settings.max_prompt_length:] for p in prompts]
        distinct, copies = _distinct(cut) if self.share_prefixes else (cut, [[i] for i in range(len(cut))])
        responses: list[list[int] | None] = [None] * len(cut)
        logq: list[list[float] | None] = [None] * len(cut)
        for bucket in _buckets([len(p) for p in distinct], self.prefill_tokens):
            rows = [i for d in bucket for i in copies[d]]
            out = _decode(model, [distinct[d] for d in bucket], [len(copies[d]) for d in bucket], pad_id,
                          _as_ids(stop_ids), settings)
            for i, r, q in zip(rows, out.responses, out.logprobs or [None] * len(rows)):
                responses[i], logq[i] = r, q
        return Generated(responses, logq if settings.do_sample else None)


def _distinct(prompts: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """(the distinct prompts in first-seen order, per distinct prompt the batch rows that hold it)."""
    index: dict[tuple[int, ...], int] = {}
    copies: list[list[int]] = []
    for i, p in enumerate(prompts):
        d = index.setdefault(tuple(p), len(index))
        if d == len(copies):
            copies.append([])
        copies[d].append(i)
    return [list(k) for k in index], copies


def _buckets(lengths: list[int], max_tokens: int | None) -> list[list[int]]:
    """Indices grouped shortest first so that each group's padded size (count × its longest) stays within
    `max_tokens` (a group has at least one prompt)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if max_tokens is None:
        return [order]
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[i] <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


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

    def _grow(self, old: torch.Tensor | None, new: torch.Tensor, size: int) -> torch.Tensor:
        buffer = new.new_empty(*new.shape[:2], size, new.shape[-1])
        if old is not None and self._n:
            buffer[..., :self._n, :] = old[..., :self._n, :]
        return buffer

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[..., :self._n, :], self._v[..., :self._n, :]


def roomy_cache(config, room: int) -> DynamicCache:
    """A `DynamicCache` whose full-attention layers append in place (other layer types, e.g. sliding windows, keep
    their own class)."""
    cache = DynamicCache(config=config)
    cache.layers = [RoomyLayer(room) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def _decode(model, prompts: list[list[int]], repeats: list[int], pad_id: int, stops: tuple[int, ...],
            settings: GenerationSettings) -> Generated:
    """Prefill `prompts` once, expand row i to `repeats[i]` copies, decode until every copy stopped; the rows of
    the result are the copies in order (prompt 0's copies first)."""
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    cache = roomy_cache(model.config, settings.max_new_tokens)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask), past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    if any(r != 1 for r in repeats):
        expand = torch.repeat_interleave(torch.arange(len(prompts), device=device),
                                         torch.tensor(repeats, device=device))
        cache.batch_select_indices(expand)
        logits, mask = logits[expand], mask[expand]
    n = int(sum(repeats))
    alive = torch.arange(n, device=device)  # original row of each row still decoding
    tokens: list[list[int]] = [[] for _ in range(n)]
    logq: list[list[float]] = [[] for _ in range(n)]
    stop = torch.tensor(stops, device=device)
    for step in range(settings.max_new_tokens):
        chosen, chosen_logq = _choose(logits, settings)
        for row, t in zip(alive.tolist(), chosen.tolist()):
            tokens[row].append(t)
        if chosen_logq is not None:
            for row, q in zip(alive.tolist(), chosen_logq.tolist()):
                logq[row].append(q)
        going = ~torch.isin(chosen, stop)
        if step + 1 == settings.max_new_tokens or not bool(going.any()):
            break
        if not bool(going.all()):  # finished rows leave the batch and the cache
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, chosen, mask = alive[keep], chosen[keep], mask[keep]
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=_positions(mask)[:, -1:],
                       past_key_values=cache, use_cache=True).logits[:, -1]
    return Generated(tokens, logq if settings.do_sample else None)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows, as transformers' generate computes them (padding gets 1, masked anyway)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


def _choose(logits: torch.Tensor, settings: GenerationSettings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The next token of each row: argmax, or a sample from softmax(logits / T) (then top-k / top-p, evaluation
    only) with its log q under the distribution that sampled it (Note [sampling distribution])."""
    if not settings.do_sample:
        return logits.argmax(-1), None
    scores = sampling_logits(logits.float(), settings.temperature)
    if settings.top_k > 0:
        kth = torch.topk(scores, min(settings.top_k, scores.size(-1)), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if settings.top_p < 1.0:
        scores = _top_p(scores, settings.top_p)
    logp = F.log_softmax(scores, dim=-1)
    chosen = torch.multinomial(logp.exp(), 1).squeeze(1)
    return chosen, logp.gather(1, chosen[:, None]).squeeze(1)


def _top_p(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches `top_p` (the most likely token always)."""
    sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
    mass = sorted_scores.softmax(-1).cumsum(-1)
    drop = mass - sorted_scores.softmax(-1) >= top_p  # the mass before this token already reaches top_p
    return scores.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
