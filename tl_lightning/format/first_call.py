"""The first tool call in a text, ignoring what follows it: the reference code's reward parses only the first call
(paper.md §5.2: the name before the first "(" and the arguments up to its ")"), so a right call followed by prose or
a second call still counts as that call. Used by the taxonomy's `paper` convention."""

from __future__ import annotations

import re

from tl_lightning.format.call_format import MAX_PARSE_CHARS, ParseFailure, ParseResult, parse_calls

_CALL_START = re.compile(r"(?<![\w.\-])[A-Za-z_][\w.\-]*\s*\(")
MAX_STARTS = 20
"""How many candidate call starts are tried (bounds the work on adversarial text)."""


def parse_first_call(text: str, max_chars: int = MAX_PARSE_CHARS) -> ParseResult:
    """The first call of `text` as a one-call `ParseResult`, or the whole text's parse failure.

    The whole text is tried first (it covers every form `parse_calls` reads, ReAct included); otherwise the first
    `name(...)` whose parentheses balance (outside string literals) and which parses as a call is taken.
    """
    whole = parse_calls(text, max_chars)
    if whole.ok and whole.calls:
        return ParseResult(calls=whole.calls[:1], thought=whole.thought)
    if not isinstance(text, str) or len(text) > max_chars:
        return whole
    for n, m in enumerate(_CALL_START.finditer(text)):
        if n >= MAX_STARTS:
            break
        end = _closing_paren(text, m.end() - 1)
        if end is None:
            continue
        part = parse_calls(text[m.start():end + 1], max_chars)
        if part.ok and len(part.calls) == 1:
            return part
    return whole if not whole.ok else ParseResult(failure=ParseFailure("empty", "no call found"))


def _closing_paren(text: str, open_at: int) -> int | None:
    """Index of the parenthesis closing the one at `open_at`, skipping string literals; None if it never closes."""
    depth, quote, i = 0, None, open_at
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i if ch == ")" else None
        i += 1
    return None
