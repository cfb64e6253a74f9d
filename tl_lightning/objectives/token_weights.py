"""PKT key tokens and weights (paper.md §4), as pure functions of character spans and token offsets.

Key tokens K of a tool call: the token holding the first character of the tool name, plus, for every other
candidate tool name that shares a non-empty prefix with the gold name, the token holding the first character where
they differ (when the candidate extends the gold name, that is the character right after the name: the `(`,
the "stop the name here" decision). Weight of K tokens: clip(|NK| / |K|, 1, w_max); every other trained token: 1.

Note [paper vs code]: the paper's figure counts |NK| over all non-key tokens of the call; the reference code
excludes parameter-closing pieces (`',`, `)` ...) and includes `</s>`. We follow the figure: NK = every trained
token of the assistant turn that is not in K (EOS included, nothing excluded). The code's boundary set exists only
for SentencePiece piece strings of one tokenizer; with w_max = 9 the weights are capped identically in practice.
Note [prefix unit]: we measure the shared prefix in characters, not tokenizer pieces, so K does not depend on how
the candidate name happens to tokenize inside the system prompt; a divergence inside the first token dedups to it.
"""

from __future__ import annotations

import os

import numpy as np

Span = tuple[int, int]


def common_prefix_len(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


def key_char_positions(name: str, name_start: int, candidates: tuple[str, ...] | list[str]) -> list[int]:
    """Absolute character positions whose tokens are key tokens for a call of `name` starting at `name_start`."""
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
