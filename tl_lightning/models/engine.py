"""Rollout engines: how a batch of tokenized prompts becomes responses. One component (`class_path`), used by RL
rollouts (`PolicyRunner.sample`) and by evaluation (`evaluation.predict`).

* `HFGenerate`: transformers' `generate` on the whole batch (the path before the engine existed). Every row is
  prefilled, padded to the longest prompt, and decoded until the last row stops.
* `DecodeLoop` (default): our own decode loop on the model's KV cache, with the levers measured in
  `benchmarks/rollout.py`:
  - **prefix sharing** (`models/prefill_plan.py`): identical prompts (a GRPO group's G samples of one prompt) are
    prefilled once and their KV cache is expanded G times, and prompts that share a prefix (RoTBench items with
    one tool list) prefill it once, then their own tails; prefill is most of a CPU rollout's time;
  - **length buckets**: prompts are prefilled shortest first, at most `prefill_tokens` (padded) tokens at a time,
    so a short prompt never waits in a batch padded to the longest one;
  - **unpadded prefill** (CPU): each prompt or shared prefix of a bucket is prefilled on its own with the causal
    attention kernel, and the caches are left-padded into the bucket's afterwards;
  - **decode in parts**: buckets prefilled apart decode as one batch within a memory budget
    (`models/decode_batch.py`): the matrix products over the weights run once per step for all their rows,
    and each bucket attends over its own cache, never padded to another's length; so one engine call over a
    whole benchmark set prefills in small buckets and still decodes every row at a time;
  - **a prompt read once** (CPU): the copies of one prompt (a GRPO group's samples) keep its keys and values
    once, and each decode step reads them once for all those rows (`models/shared_prefix.py`);
  - **finished rows leave**: a row that emitted a stop token is dropped from the decode batch and its cache;
  - **in-place KV cache**: appending a token writes into spare room instead of concatenating the whole cache;
  - **a dense sampling copy** (on CPU by default): the policy with its base dequantized and LoRA merged, as a
    plain model, rebuilt after every update (`policy_changed`); RL still learns from the policy's own log-probs.
    On CPU its linear weights are stored column-major, which MKL reads faster for the few rows of a decode step.

Both sample from the same distribution (Note [sampling distribution] in generation.py): temperature applied with
`objectives.chunked.sampling_logits`, top-k / top-p (evaluation only) after it, and log q recorded per sampled
token. Greedy outputs are token-identical across engines up to float rounding of a differently shaped batch
(tested on the tiny model and SmolLM2).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from tl_lightning.models.decode_batch import DecodeBatch, Part, attends_to_full_past, can_decode_in_parts, forward
from tl_lightning.models.dense_copy import DenseCopy, dense_bytes
from tl_lightning.models.generation import Generated, GenerationSettings, _as_ids, generate_responses, left_pad
from tl_lightning.models.kv_cache import left_padded_cache, roomy_cache
from tl_lightning.models.prefill_plan import PrefixGroup, buckets, distinct, prefix_groups
from tl_lightning.models.shared_prefix import SharedPrefix
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
        share_prefixes: prefill each distinct prompt once and expand its KV cache to its copies, and each prefix
            of at least `min_shared_prefix` tokens that distinct prompts share once before their own tails.
        min_shared_prefix: the shortest prefix worth sharing between distinct prompts.
        prefill_tokens: prompts prefilled together, shortest first, up to this many padded tokens (at least one
            prompt); each bucket is then decoded on its own. None: the whole batch at once.
        dense_copy: generate with a dense copy of the policy (`models/dense_copy.py`: base dequantized, LoRA
            merged, rebuilt after every policy update): "float32" / "bfloat16"; "none"; "auto" (default): a float32
            copy on CPU when it fits `dense_max_gib` (measured fastest there: benchmarks/rollout.py), none on GPU
            (not measured yet; a 7B copy would not fit a 24 GB card beside training). "bfloat16" is faster on CPUs
            with AMX (GRPO shape 9.4x against 5.1x for float32) but never automatic: it changed 35 of 102 greedy
            RoTBench outputs and samples 0.037 nats per token away from the policy (benchmarks/logprob_gap.py).
        dense_max_gib: the copy's memory budget: an explicit dtype over it is refused (one line), "auto" skips it.
        merge_decode_gib: buckets prefilled one after the other decode as one batch while their KV caches
            (each bucket's rows x (its longest prompt + max_new_tokens)) sum to at most this many GiB: the
            caches are held until their batch decodes, nothing is copied. A bucket over it decodes alone; None:
            every bucket alone.
        unpadded_prefill: prefill each prompt (or shared prefix) of a bucket on its own, then left-pad the caches
            into the bucket's: no padding is computed, and attention runs the causal kernel, which skips the
            masked half (a padded batch needs an explicit mask, and sdpa then scores every query against every
            key: 2.2x the attention time at 2,000 tokens on CPU). None (default): on CPU, where it measured
            faster (RoTBench evaluation 378 s -> 345 s, benchmarks/eval_speed.py), off on GPU (not measured; one
            forward per prompt gives up batching there). Only for models whose layers all attend to the full
            past; others prefill padded.
        read_prefix_once: the copies of one prompt (a GRPO group's samples) keep its keys and values once, not
            a copy per row, and each decode step reads them once for all those rows
            (`models/shared_prefix.py`). None (default): on CPU, where it measured faster (GRPO shape 4.96x ->
            5.71x of `HFGenerate`, benchmarks/rollout.py), off on GPU (not measured). Only where the model can
            decode in parts (sdpa, full attention).
        column_major_copy: store the dense copy's linear weights column-major (`dense_copy.store_column_major`): on
            CPU, MKL's fp32 GEMM reads them faster for the few rows of a decode step (GRPO shape 5.46x -> 6.33x of
            `HFGenerate`, benchmarks/rollout.py; RoTBench evaluation 265.5 s -> 246.8 s, outputs identical,
            benchmarks/eval_speed.py). None (default): for a float32 copy on CPU; off for bfloat16 (column-major
            was slower there, 8.98x -> 7.29x) and on GPU (not measured).
    """

    def __init__(self, share_prefixes: bool = True, min_shared_prefix: int = 32, prefill_tokens: int | None = 8192,
                 dense_copy: Literal["auto", "none", "float32", "bfloat16"] = "auto",
                 dense_max_gib: float | None = 2.0, merge_decode_gib: float | None = 1.0,
                 unpadded_prefill: bool | None = None, read_prefix_once: bool | None = None,
                 column_major_copy: bool | None = None) -> None:
        if prefill_tokens is not None and prefill_tokens < 1:
            raise ValueError(f"prefill_tokens must be >= 1 or null, got {prefill_tokens}")
        if merge_decode_gib is not None and merge_decode_gib <= 0:
            raise ValueError(f"merge_decode_gib must be > 0 or null, got {merge_decode_gib}")
        if min_shared_prefix < 1:
            raise ValueError(f"min_shared_prefix must be >= 1, got {min_shared_prefix}")
        self.share_prefixes, self.min_shared_prefix = share_prefixes, min_shared_prefix
        self.prefill_tokens = prefill_tokens
        self.dense_copy, self.dense_max_gib = dense_copy, dense_max_gib
        self.merge_decode_gib = merge_decode_gib
        self.unpadded_prefill = unpadded_prefill
        self.read_prefix_once = read_prefix_once
        self.column_major_copy = column_major_copy
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
            columns = self.column_major_copy
            if columns is None:  # measured faster only for a float32 copy (a bfloat16 one was slower)
                columns = dtype == torch.float32 and _on_cpu_unless_set(None, model)
            self._copy = DenseCopy(dtype, self.dense_max_gib, columns)
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
        if self.share_prefixes:
            unique, copies = distinct(cut)
            groups = prefix_groups(unique, self.min_shared_prefix)
        else:
            unique, copies = cut, [[i] for i in range(len(cut))]
            groups = [PrefixGroup(max(len(p) - 1, 0), (i,)) for i, p in enumerate(unique)]
        responses: list[list[int] | None] = [None] * len(cut)
        logq: list[list[float] | None] = [None] * len(cut)
        pending: list[_Prefilled] = []
        alone = self._prefills_unpadded(model)
        shared = self._reads_prefix_once(model)

        def decode(parts: list[_Prefilled]) -> None:
            rows = [i for p in parts for i in p.rows]
            batch = DecodeBatch([p.part for p in parts])
            out = _decode(model, batch, torch.cat([p.logits for p in parts]), _as_ids(stop_ids), settings)
            for i, r, q in zip(rows, out.responses, out.logprobs or [None] * len(rows)):
                responses[i], logq[i] = r, q

        for bucket in buckets(groups, [len(p) for p in unique], self.prefill_tokens):
            order = [d for g in bucket for d in g.members]
            part, logits = _prefill(model, bucket, unique, pad_id, settings.max_new_tokens, alone)
            own = (lambda: roomy_cache(model.config, settings.max_new_tokens)) if shared else None
            part = _expanded(part, logits, [copies[d] for d in order], own)
            if pending and not self._joins(model, pending + [part], settings.max_new_tokens):
                decode(pending)
                pending = []
            pending.append(part)
        if pending:
            decode(pending)
        return Generated(responses, logq if settings.do_sample else None)

    def _reads_prefix_once(self, model) -> bool:
        return _on_cpu_unless_set(self.read_prefix_once, model) and can_decode_in_parts(model)

    def _prefills_unpadded(self, model) -> bool:
        return _on_cpu_unless_set(self.unpadded_prefill, model) and attends_to_full_past(model)

    def _joins(self, model, parts: list[_Prefilled], new_tokens: int) -> bool:
        """Whether these prefilled buckets decode as one batch: the model can decode in parts, and their caches
        (with room for the new tokens) sum to at most `merge_decode_gib`."""
        if self.merge_decode_gib is None or not can_decode_in_parts(model):
            return False
        return sum(p.part.nbytes(new_tokens) for p in parts) <= self.merge_decode_gib * 2**30


def _on_cpu_unless_set(setting: bool | None, model) -> bool:
    """An engine option measured only on CPU: None means on there, off elsewhere."""
    return next(model.parameters()).device.type == "cpu" if setting is None else setting


@dataclass
class _Prefilled:
    """A prefilled bucket, one row per response: its cache (`Part`), next-token logits, and the index of the
    prompt (in the engine's input) each row answers."""

    part: Part
    logits: torch.Tensor
    rows: list[int]


def _expanded(part: Part, logits: torch.Tensor, copies: list[list[int]],
              own_cache: Callable[[], DynamicCache] | None = None) -> _Prefilled:
    """A prefilled bucket (one row per distinct prompt) expanded to one row per copy of each prompt: a GRPO
    group's G samples share one prefill. With `own_cache` (reading prefixes once: makes an empty cache), the
    prompts' cache becomes the copies' shared prefix, each copy starting its own; else it is copied to each."""
    repeats = [len(c) for c in copies]
    if any(r != 1 for r in repeats):
        expand = torch.repeat_interleave(torch.arange(len(repeats), device=logits.device),
                                         torch.tensor(repeats, device=logits.device))
        if own_cache is not None and part.prefix is None:
            part = _continuing(part, expand, own_cache())
        else:
            part.select(expand)
        logits = logits[expand]
    return _Prefilled(part, logits, [i for c in copies for i in c])


def _continuing(prefix: Part, owner: torch.Tensor, own: DynamicCache) -> Part:
    """Rows that continue `prefix`'s rows (`owner`: which one each), with `own` (empty) for their own tokens."""
    layers = prefix.cache.layers
    shared = SharedPrefix([x.keys for x in layers], [x.values for x in layers], prefix.mask, owner)
    return Part(own, prefix.mask.new_zeros(len(owner), 0), shared)


def _prefill(model, bucket: list[PrefixGroup], prompts: list[list[int]], pad_id: int,
             room: int, alone: bool) -> tuple[Part, torch.Tensor]:
    """(the bucket's `Part`, next-token logits), one row per member in group order. Shared prefixes are
    prefilled once, the cache expanded to the members, then each member's tail: padding sits between prefix and
    tail, masked, with positions that skip it. Nothing shared: one stage of whole prompts. Whole prompts or
    shared prefixes are prefilled one at a time (`_prefill_alone`) when `alone`, else as one padded batch.
    (The members then decode on copies of their shared prefix: keeping it once for them, `SharedPrefix`, measured
    slower on RoTBench, 246.6 s against 233.9 s; its groups are small, and the two-part attention costs more per
    step in small operations than reading the copies does.)"""
    device = next(model.parameters()).device
    if all(len(g.members) == 1 for g in bucket):
        whole = [prompts[g.members[0]] for g in bucket]
        if alone:
            return _prefill_alone(model, whole, room)
        ids, mask = (t.to(device) for t in left_pad(whole, pad_id))
        cache = roomy_cache(model.config, room)
        return Part(cache, mask), forward(model, ids, mask, cache)
    heads = [prompts[g.members[0]][:g.shared] for g in bucket]
    tails, tail_mask = (t.to(device) for t in left_pad([prompts[m][g.shared:] for g in bucket for m in g.members],
                                                        pad_id))
    if alone:
        part, _ = _prefill_alone(model, heads, tails.size(1) + room)
        cache, mask = part.cache, part.mask
    else:
        heads, mask = (t.to(device) for t in left_pad(heads, pad_id))
        cache = roomy_cache(model.config, tails.size(1) + room)
        forward(model, heads, mask, cache)
    owner = torch.repeat_interleave(torch.arange(len(bucket), device=device),
                                    torch.tensor([len(g.members) for g in bucket], device=device))
    cache.batch_select_indices(owner)
    mask = torch.cat([mask[owner], tail_mask], dim=1)
    return Part(cache, mask), forward(model, tails, mask, cache)


def _prefill_alone(model, prompts: list[list[int]], room: int) -> tuple[Part, torch.Tensor]:
    """(a `Part` of `prompts` left-padded, next-token logits): each prompt prefilled on its own, with nothing
    masked, so sdpa takes its causal kernel, then the caches left-padded into one with `room` to spare."""
    device = next(model.parameters()).device
    caches, logits = [], []
    for p in prompts:
        caches.append(DynamicCache(config=model.config))
        ids = torch.tensor([p], device=device)
        logits.append(forward(model, ids, torch.ones_like(ids), caches[-1]))
    mask = left_pad(prompts, 0)[1].to(device)
    return Part(left_padded_cache(model.config, caches, room), mask), torch.cat(logits)


def _decode(model, batch: DecodeBatch, logits: torch.Tensor, stops: tuple[int, ...],
            settings: GenerationSettings) -> Generated:
    """From prefilled rows (`batch`, and their next-token `logits`), decode until every row stopped."""
    device = logits.device
    n = logits.size(0)
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
            batch.keep(keep)
            alive, chosen = alive[keep], chosen[keep]
        logits = batch.forward(model, chosen[:, None])
    return Generated(tokens, logq if settings.do_sample else None)


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
    chosen = sample_categorical(logp.exp())
    return chosen, logp.gather(1, chosen[:, None]).squeeze(1)


def sample_categorical(probs: torch.Tensor) -> torch.Tensor:
    """One draw per row from `probs` (rows x vocabulary), by inverse CDF: the first token whose cumulative mass
    exceeds a uniform draw, so a token of zero mass is never drawn. `torch.multinomial` draws the same
    distribution but took 22 ms a step for 16 rows of SmolLM2's 49k tokens on CPU (it draws an exponential per
    token); this takes 1 ms. Float64 sums keep the draw below the total mass."""
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.size(0), 1, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_max(probs.size(1) - 1)


def _top_p(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches `top_p` (the most likely token always)."""
    sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
    mass = sorted_scores.softmax(-1).cumsum(-1)
    drop = mass - sorted_scores.softmax(-1) >= top_p  # the mass before this token already reaches top_p
    return scores.masked_fill(torch.zeros_like(drop).scatter(1, order, drop), float("-inf"))
