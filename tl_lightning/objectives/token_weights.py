"""PKT key tokens and weights (paper.md §4), as pure functions of token sequences, character spans and offsets.

Key tokens K of a tool call (the rule of the reference code, code/pkt/utils.py): the name's first token, plus, for
every other candidate tool name whose *token* sequence shares a non-empty prefix with the gold name's (both
tokenized in the same context), the gold token at the first position where the two sequences differ. When the
gold name's tokens are a prefix of the candidate's, that is the token right after the name (the "stop the name
here" decision), often the `(`. Weight of K tokens: clip(|NK| / |K|, 1, w_max); every other trained token: 1.

Note [paper vs code]: the paper's figure counts |NK| over all non-key tokens of the call; the reference code
excludes parameter-closing pieces (`',`, `)` ...) and includes `</s>`. We follow the figure: NK = every trained
token of the assistant turn that is not in K (EOS included, nothing excluded). The code's boundary set exists only
for SentencePiece piece strings of one tokenizer; with w_max = 9 the weights are capped identically in practice.
Note [prefix unit]: the shared prefix is measured in tokens, as the reference code does. A shared *character*
prefix (`key_char_positions`, kept to measure the difference) lands on the wrong token whenever the tokenizer
splits before the first differing character: for CodeLLaMA's `▁get P aper Details` vs `▁get P apers By Key words`
the deciding token is `aper`, not `Details`; for `getUser(` vs `getUsers(` it is the token ending the name, not `(`.
"""

from __future__ import annotations

import os

import numpy as np

Span = tuple[int, int]


def common_prefix_len(a, b) -> int:
    """Length of the common prefix of two sequences (strings or token id lists)."""
    return len(os.path.commonprefix([list(a), list(b)]))


def divergence_index(gold: list[int], candidate: list[int]) -> int | None:
    """Index into `gold` of the first token where `candidate` differs, when they share a non-empty token prefix
    (the key token the candidate makes); None when they differ from the first token or do not differ at all."""
    lcp = common_prefix_len(gold, candidate)
    if lcp == 0 or lcp == len(gold) == len(candidate):
        return None
    return min(lcp, len(gold) - 1)  # the gold ends first only if the candidate is longer: its last token decides


def key_char_positions(name: str, name_start: int, candidates: tuple[str, ...] | list[str]) -> list[int]:
    """The character-prefix rule (superseded, see Note [prefix unit]): absolute character positions whose tokens
    were taken as key tokens for a call of `name` starting at `name_start`."""
    positions = {name_start}
    for other in candidates:
        if other == name:
            continue
        lcp = common_prefix_len(name, other)
        if lcp > 0:
            positions.add(name_start + lcp)  # lcp == len(name): the char after the name
    return sorted(positions)


def tokens_at(char_positions: list[int], starts: np.ndarray, ends: np.ndarray) -> list[int]:
    """Token indices whose [start, end) covers each char position (positions no token covers are skipped)."""
    out = []
    for c in char_positions:
        idx = np.nonzero((starts <= c) & (ends > c))[0]
        if idx.size:
            out.append(int(idx[0]))
    return sorted(set(out))


def pkt_weight(n_key: int, n_nonkey: int, w_max: float) -> float:
    """clip(|NK| / |K|, 1, w_max); 1 when there is no key token."""
    if n_key <= 0:
        return 1.0
    return float(min(max(n_nonkey / n_key, 1.0), w_max))
