"""Rendered conversation → input_ids, labels, PKT weights and key mask, via the tokenizer's offset mapping.

One pass over the whole conversation: every assistant turn is trained in the same sequence (the paper code makes
one copy per turn). A token is trained when it lies inside a trainable segment whose message is not blocked by MAE.
Nothing here searches text: positions come from the renderer's character spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tl_lightning.constants import IGNORE_INDEX
from tl_lightning.data.render import Rendered
from tl_lightning.objectives.token_weights import key_char_positions, pkt_weight, tokens_at


@dataclass
class PKTSettings:
    """PKT token weighting."""

    weighting: str = "pkt"
    """"pkt" (key tokens up-weighted) or "uniform" (plain cross-entropy)."""
    w_max: float = 9.0
    """Upper clip of the key-token weight (paper code: 9)."""
    param_keys_as_key: bool = False
    """Extension (off in the paper): also treat argument-name tokens as key tokens."""

    def __post_init__(self) -> None:
        if self.weighting not in ("pkt", "uniform"):
            raise ValueError(f"weighting must be 'pkt' or 'uniform', got {self.weighting!r}")
        if self.w_max < 1:
            raise ValueError(f"w_max must be >= 1, got {self.w_max}")


@dataclass
class Encoded:
    """One tokenized training sequence (lists, aligned with `input_ids`; labels unshifted)."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    key_mask: list[bool]
    n_trainable: int
    n_blocked: int


def encode_rendered(rendered: Rendered, tokenizer, candidate_names: tuple[str, ...], blocked: frozenset[int] = frozenset(),
                    pkt: PKTSettings | None = None, max_length: int | None = None,
                    add_special_tokens: bool = True) -> Encoded:
    """Tokenize `rendered.text` once and derive labels/weights from its segments.

    Args:
        rendered: text + segments from a renderer.
        tokenizer: HF tokenizer with offset mapping (a "fast"/tokenizers-backed one).
        candidate_names: tool names offered in the conversation (PKT divergence candidates).
        blocked: assistant message indices MAE blocks from the loss (kept in the input).
        pkt: weighting settings (None → uniform).
        max_length: keep the first `max_length` tokens (right truncation, as the paper code).
        add_special_tokens: let the tokenizer add BOS (the paper format has none in its text).
    """
    pkt = pkt or PKTSettings(weighting="uniform")
    enc = tokenizer(rendered.text, return_offsets_mapping=True, add_special_tokens=add_special_tokens)
    ids = list(enc["input_ids"])
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts  # special tokens added by the tokenizer have empty offsets
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
        labels[inside] = np.asarray(ids)[inside]
        weights[inside] = 1.0
        if pkt.weighting == "pkt":
            _weight_segment(seg, inside, starts, ends, candidate_names, pkt, weights, key_mask)
    if max_length is not None and len(ids) > max_length:
        ids, labels, weights, key_mask = ids[:max_length], labels[:max_length], weights[:max_length], key_mask[:max_length]
    return Encoded(ids, labels.tolist(), weights.tolist(), key_mask.tolist(), int((labels != IGNORE_INDEX).sum()), n_blocked)


def _weight_segment(seg, inside: np.ndarray, starts: np.ndarray, ends: np.ndarray, candidates: tuple[str, ...],
                    pkt: PKTSettings, weights: np.ndarray, key_mask: np.ndarray) -> None:
    chars: list[int] = []
    for name, (start, _) in zip(seg.call_names, seg.name_spans):
        chars += key_char_positions(name, start, candidates)
    if pkt.param_keys_as_key:
        chars += [c for (k0, k1), _ in seg.arg_spans for c in range(k0, k1)]
    key = [t for t in tokens_at(chars, starts, ends) if inside[t]]
    if not key:
        return
    n_key = len(key)
    w = pkt_weight(n_key, int(inside.sum()) - n_key, pkt.w_max)
    weights[key] = w
    key_mask[key] = True


def check_prefix(rendered: Rendered, tokenizer, add_special_tokens: bool = True) -> list[int]:
    """Message indices of trainable segments whose preceding text does not tokenize to a prefix of the full
    sequence (then the model sees different context tokens at generation time than in training)."""
    full = tokenizer(rendered.text, add_special_tokens=add_special_tokens)["input_ids"]
    bad = []
    for seg in rendered.segments:
        if seg.trainable:
            prefix = tokenizer(rendered.text[: seg.start], add_special_tokens=add_special_tokens)["input_ids"]
            if full[: len(prefix)] != prefix:
                bad.append(seg.message_index)
    return bad
