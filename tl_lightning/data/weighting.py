"""Token weighting of trained assistant turns, chosen in YAML (`data.init_args.weighting`).

* `PKTWeighting` — PKT (paper.md §4): the key tokens K of each call get weight clip(|NK| / |K|, 1, w_max), every
  other trained token 1.
* `UniformWeighting` — plain cross-entropy (standard SFT).

A weighting sees one trained segment at a time, with the token offsets of the whole sequence, and returns the key
token indices and their weight; `tokenization.encode_rendered` writes them into the weight tensor. The pure math
(key positions, the clipped weight) lives in `objectives.token_weights`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from tl_lightning.format.render import Segment
from tl_lightning.objectives.token_weights import divergence_index, pkt_weight, tokens_at


class TokenWeighting(ABC):
    """Chooses the up-weighted tokens of a trained assistant segment."""

    @abstractmethod
    def key_tokens(self, text: str, seg: Segment, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                   inside: np.ndarray, tokenizer, candidates: tuple[str, ...]) -> tuple[list[int], float]:
        """(token indices of the key tokens, their weight) for segment `seg` of `text`.

        Args:
            text: the rendered text.
            seg: the trained segment (its calls' name spans and argument spans).
            ids: (n,) token ids of the whole sequence.
            starts, ends: (n,) character offsets of every token of the sequence.
            inside: (n,) bool, the tokens of the sequence that lie inside `seg`.
            tokenizer: the tokenizer that produced the offsets.
            candidates: tool names offered in the conversation.
        """


@dataclass(frozen=True)
class UniformWeighting(TokenWeighting):
    """Every trained token has weight 1 (standard SFT)."""

    def key_tokens(self, text, seg, ids, starts, ends, inside, tokenizer, candidates) -> tuple[list[int], float]:
        return [], 1.0


@dataclass(frozen=True)
class PKTWeighting(TokenWeighting):
    """PKT key-token weighting: per call, the name's first token plus the gold token where the gold name's token
    sequence first differs from each candidate name sharing a token prefix with it (objectives.token_weights).

    Args:
        w_max: upper clip of the key-token weight (paper code: 9).
        param_keys_as_key: extension (off in the paper): argument-name tokens are key tokens too.
    """

    w_max: float = 9.0
    param_keys_as_key: bool = False

    def __post_init__(self) -> None:
        if self.w_max < 1:
            raise ValueError(f"w_max must be >= 1, got {self.w_max}")

    def key_tokens(self, text, seg, ids, starts, ends, inside, tokenizer, candidates) -> tuple[list[int], float]:
        key: set[int] = set()
        for name, (n0, n1) in zip(seg.call_names, seg.name_spans):
            key.update(tokens_at([n0], starts, ends))
            # a candidate can share the first token only if it shares the first character
            rivals = [c for c in candidates if c != name and c[:1] == name[:1]]
            if rivals:
                key.update(divergence_tokens(text, (n0, n1), seg.end, rivals, tokenizer, ids, starts, ends))
        if self.param_keys_as_key:
            key.update(tokens_at([c for (k0, k1), _ in seg.arg_spans for c in range(k0, k1)], starts, ends))
        key_list = sorted(t for t in key if inside[t])
        return key_list, pkt_weight(len(key_list), int(inside.sum()) - len(key_list), self.w_max)


def divergence_tokens(text: str, name_span: tuple[int, int], seg_end: int, rivals: list[str], tokenizer,
                      ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[int]:
    """Token indices (of the full sequence) where the gold name's tokens first differ from each rival's.

    Each rival replaces the gold name in the same context: the text from the start of the name's line to the end
    of the turn. When that local window does not tokenize like the full sequence from the name on (a tokenizer
    whose merges reach across lines), the whole text up to the turn's end is the window instead.
    """
    n0, n1 = name_span
    for w0 in dict.fromkeys((text.rfind("\n", 0, n0) + 1, 0)):  # local window first, the full context as fallback
        (gold, offsets), rival_ids = _window_tokens(text, w0, name_span, seg_end, rivals, tokenizer)
        full = [_token_at(w0 + a, starts, ends) for a, _ in offsets]
        if None not in full and [int(ids[t]) for t in full] == gold:
            break
    else:
        return []  # cannot align the window with the sequence: no divergence key (the first token still is one)
    out = []
    for candidate in rival_ids:
        i = divergence_index(gold, candidate)
        if i is not None:
            out.append(full[i])
    return out


def _window_tokens(text: str, w0: int, name_span: tuple[int, int], seg_end: int, rivals: list[str], tokenizer):
    """((gold ids, gold offsets), [rival ids]) of the window text[w0:seg_end], each from the name's token on."""
    n0, n1 = name_span
    windows = [text[w0:seg_end]] + [text[w0:n0] + r + text[n1:seg_end] for r in rivals]
    enc = tokenizer(windows, add_special_tokens=False, return_offsets_mapping=True)
    rel = n0 - w0
    out = []
    for row_ids, row_offsets in zip(enc["input_ids"], enc["offset_mapping"]):
        first = next(i for i, (a, b) in enumerate(row_offsets) if b > rel)  # the token holding the name's 1st char
        out.append((list(row_ids[first:]), [tuple(o) for o in row_offsets[first:]]))
    return out[0], [row for row, _ in out[1:]]


def _token_at(char: int, starts: np.ndarray, ends: np.ndarray) -> int | None:
    found = tokens_at([char], starts, ends)
    return found[0] if found else None
