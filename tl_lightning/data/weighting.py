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
from tl_lightning.objectives.token_weights import key_char_positions, pkt_weight, tokens_at


class TokenWeighting(ABC):
    """Chooses the up-weighted tokens of a trained assistant segment."""

    @abstractmethod
    def key_tokens(self, text: str, seg: Segment, inside: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                   tokenizer, candidates: tuple[str, ...]) -> tuple[list[int], float]:
        """(token indices of the key tokens, their weight) for segment `seg` of `text`.

        Args:
            text: the rendered text.
            seg: the trained segment (its calls' name spans and argument spans).
            inside: (n,) bool, the tokens of the sequence that lie inside `seg`.
            starts, ends: (n,) character offsets of every token of the sequence.
            tokenizer: the tokenizer that produced the offsets.
            candidates: tool names offered in the conversation.
        """


@dataclass(frozen=True)
class UniformWeighting(TokenWeighting):
    """Every trained token has weight 1 (standard SFT)."""

    def key_tokens(self, text, seg, inside, starts, ends, tokenizer, candidates) -> tuple[list[int], float]:
        return [], 1.0


@dataclass(frozen=True)
class PKTWeighting(TokenWeighting):
    """PKT key-token weighting.

    Args:
        w_max: upper clip of the key-token weight (paper code: 9).
        param_keys_as_key: extension (off in the paper): argument-name tokens are key tokens too.
    """

    w_max: float = 9.0
    param_keys_as_key: bool = False

    def __post_init__(self) -> None:
        if self.w_max < 1:
            raise ValueError(f"w_max must be >= 1, got {self.w_max}")

    def key_tokens(self, text, seg, inside, starts, ends, tokenizer, candidates) -> tuple[list[int], float]:
        chars: list[int] = []
        for name, (start, _) in zip(seg.call_names, seg.name_spans):
            chars += key_char_positions(name, start, candidates)
        if self.param_keys_as_key:
            chars += [c for (k0, k1), _ in seg.arg_spans for c in range(k0, k1)]
        key = [t for t in tokens_at(chars, starts, ends) if inside[t]]
        return key, pkt_weight(len(key), int(inside.sum()) - len(key), self.w_max)
