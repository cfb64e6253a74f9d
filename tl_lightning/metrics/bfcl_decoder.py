"""BFCL's output decoder for prompting models (`model_handler/utils.py`, `default_decode_ast_prompting`, of
`bfcl-eval==2025.6.8`), re-implemented so that no BFCL code, and no `eval`, runs on model output.

What BFCL does, and so do we: strip "`", newlines and spaces from both ends, wrap in [...], strip "[", "]" and "'"
from both ends, then parse one Python expression. A code fence with a language tag ("```python") therefore fails
to decode. Positional arguments are dropped; a bare name becomes its name as a string; a call without keywords
becomes its source text; every unary operator on a constant negates it. BFCL `eval`s arithmetic (`1/6`); we
compute literal arithmetic only, with bounded sizes, and count anything else (`abs(-1) + 1`) as a failure.
"""

from __future__ import annotations

import ast
import operator
import warnings
from typing import Any

from tl_lightning.format.call_format import MAX_PARSE_CHARS


class DecodeError(ValueError):
    """The output does not decode as BFCL's list of calls (`ast_decoder:decoder_failed`)."""


def decode_ast(text: str) -> list[dict[str, dict]]:
    """BFCL's `default_decode_ast_prompting` for Python: `[{name: {param: value}}, ...]`, or `DecodeError`."""
    s = text.strip("`\n ")
    s = s if s.startswith("[") else "[" + s
    s = s if s.endswith("]") else s + "]"
    s = s.strip("[]'")
    if len(s) > MAX_PARSE_CHARS:
        raise DecodeError(f"{len(s)} chars > limit {MAX_PARSE_CHARS}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            body = ast.parse(s, mode="eval").body
        nodes = [body] if isinstance(body, ast.Call) else getattr(body, "elts", None)
        if nodes is None or not all(isinstance(n, ast.Call) for n in nodes):
            raise DecodeError("not a call or a list of calls")
        return [_call(n) for n in nodes]
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError, OverflowError) as e:
        raise DecodeError(f"{type(e).__name__}: {str(e)[:200]}") from None


def as_bfcl_answer(text: str) -> str:
    """The output BFCL's decoder reads. Our call format writes several calls one per line, which BFCL's list syntax
    cannot hold; when the text does not decode as it is but every non-blank line is one bare call, the calls are
    written as BFCL's list `[a(...), b(...)]`. Everything else is scored verbatim (a fenced block stays a failure)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) < 2 or len(text) > MAX_PARSE_CHARS:
        return text
    try:
        decode_ast(text)
        return text
    except DecodeError:
        pass
    for line in lines:
        try:
            if not isinstance(ast.parse(line, mode="eval").body, ast.Call):
                return text
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return text
    return "[" + ", ".join(lines) + "]"


def _call(node: ast.Call) -> dict[str, dict]:
    parts, func = [], node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return {".".join(reversed(parts)): {kw.arg: _value(kw.value) for kw in node.keywords}}


def _value(node: ast.expr | None) -> Any:
    if isinstance(node, ast.Constant):
        return "..." if node.value is Ellipsis else node.value
    if isinstance(node, ast.UnaryOp):  # BFCL: -operand.value, whatever the operator
        operand = node.operand.value if isinstance(node.operand, ast.Constant) else None
        if isinstance(operand, (int, float, complex)):
            return -operand
        raise DecodeError("unary operator on a non-number")
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.BinOp):
        return _arithmetic(node)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _call(node) if node.keywords else ast.unparse(node)
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.Subscript):
        return f"{ast.unparse(node.value)}[{ast.unparse(node.slice)}]"
    raise DecodeError(f"unsupported value {type(node).__name__}")


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.BitOr: operator.or_,
           ast.BitAnd: operator.and_, ast.BitXor: operator.xor, ast.LShift: operator.lshift,
           ast.RShift: operator.rshift}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert}


def _arithmetic(node: ast.expr) -> Any:
    """What BFCL gets by evaluating `ast.unparse(node)` for literal arithmetic, with bounded sizes; nothing else."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_arithmetic(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_arithmetic(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        _refuse_huge(node.op, left, right)
        try:
            return _BINARY[type(node.op)](left, right)
        except (ArithmeticError, TypeError, ValueError) as e:
            raise DecodeError(f"arithmetic fails: {type(e).__name__}") from None
    raise DecodeError(f"{type(node).__name__} in arithmetic (BFCL would eval it)")


def _refuse_huge(op: ast.operator, left: Any, right: Any) -> None:
    """Bound what literal arithmetic may build (BFCL's eval has no bound; a model's output must not hang us)."""
    ints = all(isinstance(x, int) for x in (left, right))
    if isinstance(op, (ast.Pow, ast.LShift)) and isinstance(right, (int, float)) and abs(right) > 1000 or \
            isinstance(op, ast.Pow) and ints and left.bit_length() * abs(right) > 1_000_000:
        raise DecodeError("exponent or shift too large")
    sequence = next((x for x in (left, right) if isinstance(x, (str, bytes, list, tuple))), None)
    times = next((x for x in (left, right) if isinstance(x, int)), None)
    if isinstance(op, ast.Mult) and sequence is not None and times is not None and len(sequence) * times > 1_000_000:
        raise DecodeError("repetition too large")


def is_empty_output(decoded: list) -> bool:
    """BFCL's relevance rule: no call, or one call of nothing, counts as no call."""
    return len(decoded) == 0 or (len(decoded) == 1 and len(decoded[0]) == 0)
