"""Rendered conversation → input_ids, labels, PKT weights and key mask, via the tokenizer's offset mapping.

One pass over the whole conversation: every assistant turn is trained in the same sequence (the paper code makes
one copy per turn). A token is trained when it lies inside a trainable segment whose message is not blocked by MAE.
Nothing here searches text: positions come from the renderer's character spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tl_lightning.constants import IGNORE_INDEX
from tl_lightning.data.weighting import TokenWeighting, UniformWeighting
from tl_lightning.format.render import Rendered, Renderer
from tl_lightning.format.schema import Conversation


@dataclass
class Encoded:
    """One tokenized training sequence (lists, aligned with `input_ids`; labels unshifted)."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    key_mask: list[bool]
    n_trainable: int
    n_blocked: int


def tokenize_rendered(rendered: Rendered, tokenizer, offsets: bool = False) -> dict:
    """Tokenize a renderer's text under its BOS policy (the one way text of a renderer becomes tokens)."""
    return tokenizer(rendered.text, return_offsets_mapping=offsets, add_special_tokens=rendered.add_special_tokens)


def prompt_token_ids(prompts: list[Conversation], renderer: Renderer, tokenizer) -> list[list[int]]:
    """Token ids of each step prompt, rendered up to the assistant header (generation prompts)."""
    return [list(tokenize_rendered(renderer.render(c, add_generation_prompt=True), tokenizer)["input_ids"])
            for c in prompts]


def encode_rendered(rendered: Rendered, tokenizer, candidate_names: tuple[str, ...],
                    blocked: frozenset[int] = frozenset(),
                    weighting: TokenWeighting = UniformWeighting(), max_length: int | None = None) -> Encoded:
    """Tokenize `rendered.text` once and derive labels/weights from its segments.

    Args:
        rendered: text + segments from a renderer.
        tokenizer: HF tokenizer with offset mapping (a "fast"/tokenizers-backed one).
        candidate_names: tool names offered in the conversation (PKT divergence candidates).
        blocked: assistant message indices MAE blocks from the loss (kept in the input).
        weighting: which trained tokens are up-weighted (PKT) or none (uniform).
        max_length: keep the first `max_length` tokens (right truncation, as the paper code).
    """
    enc = tokenize_rendered(rendered, tokenizer, offsets=True)
    ids = list(enc["input_ids"])
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts  # special tokens added by the tokenizer have empty offsets
    id_array = np.asarray(ids, dtype=np.int64)
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    weights = np.zeros(len(ids), dtype=np.float32)
    key_mask = np.zeros(len(ids), dtype=bool)
    n_blocked = 0
    for seg in rendered.segments:
        if not seg.trainable:
            continue
        inside = real & (starts >= seg.start) & (ends <= seg.end)
        if seg.message_index in blocked:
            n_blocked += int(inside.sum())
            continue
        labels[inside] = id_array[inside]
        weights[inside] = 1.0
        key, w = weighting.key_tokens(rendered.text, seg, id_array, starts, ends, inside, tokenizer, candidate_names)
        weights[key] = w
        key_mask[key] = True
    if max_length is not None and len(ids) > max_length:
        ids, labels, weights, key_mask = (x[:max_length] for x in (ids, labels, weights, key_mask))
    return Encoded(ids, labels.tolist(), weights.tolist(), key_mask.tolist(), int((labels != IGNORE_INDEX).sum()),
                   n_blocked)


def check_prefix(rendered: Rendered, tokenizer) -> list[int]:
    """Message indices of trainable segments whose preceding text does not tokenize to a prefix of the full
    sequence (then the model sees different context tokens at generation time than in training)."""
    full = tokenize_rendered(rendered, tokenizer)["input_ids"]
    bad = []
    for seg in rendered.segments:
        if seg.trainable:
            prefix = tokenizer(rendered.text[: seg.start], add_special_tokens=rendered.add_special_tokens)["input_ids"]
            if full[: len(prefix)] != prefix:
                bad.append(seg.message_index)
    return bad
