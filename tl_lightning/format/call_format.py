"""The tool-call text format: the one place that renders and parses calls.

Rendering (the paper's single-quote style, paper.md §3.4): `name(k='v', n=1, flag=True, xs=[1, 2])`. Values are
Python literals (`repr` of str/int/float/bool/None, lists, dicts). Several calls are written one per line. A key
that is not a Python name (RoTBench has `code:`) is written `**{'code:': 'v'}`, which parses back exactly.
`render_call` returns the text plus character spans of the tool name and of each argument key and value, which the
tokenizer's offset mapping turns into token positions (PKT key tokens, argument spans) without searching text.

Parsing (`parse_calls`) accepts what models and datasets actually write, using `ast` only (never eval/exec):
  * Python calls: `name(k='v')`, `a.b(k="v")`, `hyphen-name(k=1)` (OpenAPI operation names), several calls on
    separate lines or `;`-separated, a list `[f(), g()]`;
    values may be any literal, negative numbers, and JSON spellings `true`/`false`/`null`;
  * ReAct: `Thought: ...\\nAction: name\\nAction Input: {json}` (RoTBench, ToolEyes, ToolAlpaca), repeated for
    several calls; the input may be JSON or a Python dict literal;
  * the TL-Training raw form `name\\n{json}`.
It returns a `ParseResult`, with a typed `ParseFailure` instead of raising, and bounds the input size so that
adversarial text costs bounded time.
"""

from __future__ import annotations

import ast
import json
import keyword
import operator
import re
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from tl_lightning.format.schema import ToolCall

Span = tuple[int, int]
MAX_PARSE_CHARS = 20_000
"""Longer outputs are rejected unparsed: a 7B's 512-token answer is ~2k chars; this bounds parse time."""

FailureKind = Literal["empty", "too_long", "syntax", "not_a_call", "positional_argument", "non_literal_value",
                      "bad_action_input", "empty_action_input", "duplicate_argument"]


@dataclass(frozen=True)
class RenderedCall:
    """A call as text, with spans relative to `text`: `name` and one `(key, value)` span pair per argument."""

    text: str
    name: Span
    args: tuple[tuple[Span, Span], ...]


@dataclass(frozen=True)
class ParseFailure:
    """Why a text is not a tool call."""

    kind: FailureKind
    reason: str


@dataclass(frozen=True)
class ParseResult:
    """Outcome of `parse_calls`: calls (possibly empty when `failure` is set) and an optional ReAct thought."""

    calls: tuple[ToolCall, ...] = ()
    failure: ParseFailure | None = None
    thought: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


# ----------------------------------------------------------------------------------------------------- rendering
def render_value(value: Any) -> str:
    """A Python literal for a JSON-compatible value; strings use `repr` (single quotes unless they contain one)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{render_value(k)}: {render_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render a {type(value).__name__} as a tool-call argument")


def plain_name(name: str) -> bool:
    """A name that can be written bare in Python syntax and reads back unchanged: an identifier, not a keyword,
    and NFKC-stable (Python NFKC-normalises identifiers when parsing: "ﬀ" reads back as "ff")."""
    return name.isidentifier() and not keyword.iskeyword(name) and unicodedata.normalize("NFKC", name) == name


def render_call(call: ToolCall) -> RenderedCall:
    """Render one call as `name(k=v, ...)` with name / key / value spans."""
    parts = [call.name, "("]
    pos = len(call.name) + 1
    spans = []
    for i, (key, value) in enumerate(call.arguments.items()):
        if i:
            parts.append(", ")
            pos += 2
        val = render_value(value)
        if plain_name(key):
            key_text, sep, close = key, "=", ""
        else:  # e.g. RoTBench's "code:" or "api-key": not a Python name, so a literal **{...} (parsed back exactly)
            key_text, sep, close = repr(key), ": ", "}"
            parts.append("**{")
            pos += 3
        key_span = (pos, pos + len(key_text))
        value_span = (key_span[1] + len(sep), key_span[1] + len(sep) + len(val))
        parts += [key_text, sep, val, close]
        spans.append((key_span, value_span))
        pos = value_span[1] + len(close)
    parts.append(")")
    return RenderedCall(text="".join(parts), name=(0, len(call.name)), args=tuple(spans))


def render_calls(calls: tuple[ToolCall, ...] | list[ToolCall]) -> list[tuple[int, RenderedCall]]:
    """Render several calls one per line; returns `(offset_in_joined_text, RenderedCall)` pairs."""
    out, offset = [], 0
    for call in calls:
        rc = render_call(call)
        out.append((offset, rc))
        offset += len(rc.text) + 1
    return out


def join_rendered(rendered: list[tuple[int, RenderedCall]]) -> str:
    return "\n".join(rc.text for _, rc in rendered)


# ------------------------------------------------------------------------------------------------------- parsing
_REACT_ACTION = re.compile(r"Action\s*:", re.IGNORECASE)
_REACT_INPUT = re.compile(r"Action[ _]Input\s*:", re.IGNORECASE)
_RAW_FORM = re.compile(r"\A\s*([A-Za-z_][\w.\-]*)\s*\n\s*(\{.*\})\s*\Z", re.DOTALL)
_JSON_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def parse_calls(text: str, max_chars: int = MAX_PARSE_CHARS) -> ParseResult:
    """Parse model output or dataset text into tool calls. Never raises, never executes anything."""
    if not isinstance(text, str):
        return ParseResult(failure=ParseFailure("not_a_call", f"expected text, got {type(text).__name__}"))
    body = _strip_fences(text).strip()
    if not body:
        return ParseResult(failure=ParseFailure("empty", "empty output"))
    if len(body) > max_chars:
        return ParseResult(failure=ParseFailure("too_long", f"{len(body)} chars > limit {max_chars}"))
    try:
        if _REACT_ACTION.search(body):  # ReAct, unless it is a Python call whose string merely says "Action:"
            python = _parse_python_calls(body)
            return python if python.ok else _parse_react(body)
        raw = _RAW_FORM.match(body)
        if raw:
            return _parse_raw_form(raw.group(1), raw.group(2))
        return _parse_python_calls(body)
    except (RecursionError, MemoryError, ValueError, TypeError, OverflowError) as e:
        # Deep nesting / huge literals: the parser's own limits end up here.
        return ParseResult(failure=ParseFailure("syntax", f"{type(e).__name__}: {str(e)[:200]}"))


def _strip_fences(text: str) -> str:
    s = text.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        s = s.rsplit("```", 1)[0]
    return s


_HYPHEN = "__hyphen_2d__"  # stands in for "-" inside tool names while Python parses (checked absent first)
_HYPHENATED_NAME = re.compile(r"(?<![\w.'\"])([A-Za-z_][\w.]*(?:-[A-Za-z_][\w.]*)+)(?=\s*\()")


def _parse_python_calls(body: str) -> ParseResult:
    # OpenAPI-derived tool names may contain hyphens (ToolAlpaca's `preferred-routes_get`); Python would read a
    # subtraction. Names followed by "(" are escaped reversibly, and every parsed string is un-escaped after.
    if "-" in body and _HYPHEN not in body:
        escaped = _HYPHENATED_NAME.sub(lambda m: m.group(1).replace("-", _HYPHEN), body)
        if escaped != body:
            result = _parse_python_calls_exact(escaped)
            return _unescape(result) if result.ok else _parse_python_calls_exact(body)
    return _parse_python_calls_exact(body)


def _unescape(result: ParseResult) -> ParseResult:
    def fix(v):
        if isinstance(v, str):
            return v.replace(_HYPHEN, "-")
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {fix(k): fix(x) for k, x in v.items()}
        return v

    return ParseResult(calls=tuple(ToolCall(fix(c.name), fix(c.arguments)) for c in result.calls),
                       thought=result.thought)


def _parse_python_calls_exact(body: str) -> ParseResult:
    try:
        with warnings.catch_warnings():  # odd model output makes the compiler warn (e.g. "invalid decimal literal")
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="exec")
    except SyntaxError as e:
        return ParseResult(failure=ParseFailure("syntax", f"not valid call syntax: {e.msg} (line {e.lineno})"))
    nodes: list[ast.expr] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            return ParseResult(failure=ParseFailure("not_a_call", f"a {type(stmt).__name__} statement, not a call"))
        value = stmt.value
        nodes.extend(value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value])
    if not nodes:
        return ParseResult(failure=ParseFailure("empty", "no call found"))
    calls = []
    for node in nodes:
        call = _call_from_node(node)
        if isinstance(call, ParseFailure):
            return ParseResult(failure=call)
        calls.append(call)
    return ParseResult(calls=tuple(calls))


def _call_from_node(node: ast.expr) -> ToolCall | ParseFailure:
    if not isinstance(node, ast.Call):
        return ParseFailure("not_a_call", f"expected name(...), found a {type(node).__name__}")
    name = _dotted_name(node.func)
    if name is None:
        return ParseFailure("not_a_call", "the called object is not a plain or dotted name")
    if node.args:
        return ParseFailure("positional_argument", f"{name}() has positional arguments; keyword arguments only")
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:  # **{'non-identifier key': value}: a literal dict with string keys only
            ok, unpacked = _literal(kw.value)
            if not ok or not isinstance(unpacked, dict) or not all(isinstance(k, str) for k in unpacked):
                return ParseFailure("non_literal_value", f"{name}() uses **kwargs that are not a literal dict")
            items = list(unpacked.items())
        else:
            ok, value = _literal(kw.value)
            if not ok:
                return ParseFailure("non_literal_value", f"{name}({kw.arg}=...) is not a literal value")
            items = [(kw.arg, value)]
        for key, value in items:
            if key in args:
                return ParseFailure("duplicate_argument", f"{name}() repeats argument {key!r}")
            args[key] = value
    return ToolCall(name=name, arguments=args)


def _dotted_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _literal(node: ast.expr) -> tuple[bool, Any]:
    """A safe subset of `ast.literal_eval` returning JSON-compatible values (tuples and sets become lists)."""
    if isinstance(node, ast.Constant) and not isinstance(node.value, (bytes, complex, type(Ellipsis))):
        return True, node.value
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return True, _JSON_NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        ok, v = _literal(node.operand)
        if ok and isinstance(v, (int, float)) and not isinstance(v, bool):
            return True, -v if isinstance(node.op, ast.USub) else v
        return False, None
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:  # literal arithmetic: BFCL golds write p=1/6
        ok_l, left = _literal(node.left)
        ok_r, right = _literal(node.right)
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (left, right))
        if not (ok_l and ok_r and numeric) or (isinstance(node.op, ast.Div) and right == 0):
            return False, None
        value = _ARITHMETIC[type(node.op)](left, right)
        return (True, value) if abs(value) < 1e18 else (False, None)  # bounded: no huge products
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        out = []
        for elt in node.elts:
            ok, v = _literal(elt)
            if not ok:
                return False, None
            out.append(v)
        return True, out
    if isinstance(node, ast.Dict):
        d = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                return False, None
            ok_k, kv = _literal(k)
            ok_v, vv = _literal(v)
            if not (ok_k and ok_v) or isinstance(kv, (list, dict)):
                return False, None
            d[kv] = vv
        return True, d
    return False, None


def _parse_react(body: str) -> ParseResult:
    actions = list(_REACT_ACTION.finditer(body))
    # "Action Input:" also matches "Action\s*:"? No: the input marker has " Input" before the colon. Filter anyway.
    actions = [m for m in actions if not _REACT_INPUT.match(body, m.start())]
    thought = body[: actions[0].start()].strip()
    thought = re.sub(r"\A\s*Thought\s*:\s*", "", thought, flags=re.IGNORECASE)
    calls = []
    for i, m in enumerate(actions):
        end = actions[i + 1].start() if i + 1 < len(actions) else len(body)
        chunk = body[m.end():end]
        inp = _REACT_INPUT.search(chunk)
        name = (chunk[: inp.start()] if inp else chunk).strip().splitlines()
        name = name[0].strip() if name else ""
        if not name:
            return ParseResult(failure=ParseFailure("not_a_call", "ReAct 'Action:' without a tool name"),
                               thought=thought)
        raw_input = chunk[inp.end():].strip() if inp else ""
        raw_input = re.split(r"\n\s*(?:Thought|Observation)\s*:", raw_input, maxsplit=1)[0].strip()
        if not raw_input:  # "Action Input:" missing or empty is not a call with no arguments (that is "{}")
            return ParseResult(failure=ParseFailure("empty_action_input", f"ReAct action {name!r} has no Action Input"),
                               thought=thought)
        args = _parse_arguments(raw_input)
        if isinstance(args, ParseFailure):
            return ParseResult(failure=args, thought=thought)
        calls.append(ToolCall(name=name, arguments=args))
    return ParseResult(calls=tuple(calls), thought=thought)


def _parse_raw_form(name: str, raw_args: str) -> ParseResult:
    args = _parse_arguments(raw_args)
    if isinstance(args, ParseFailure):
        return ParseResult(failure=args)
    return ParseResult(calls=(ToolCall(name=name, arguments=args),))


def _parse_arguments(raw: str) -> dict | ParseFailure:
    """JSON object first, then a Python dict literal; empty input means no arguments."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(raw, mode="eval")
        except SyntaxError:
            return ParseFailure("bad_action_input", f"action input is neither JSON nor a dict literal: {raw[:80]!r}")
        ok, value = _literal(tree.body)
        if not ok:
            return ParseFailure("bad_action_input", "action input is not a literal")
    if not isinstance(value, dict):
        return ParseFailure("bad_action_input", f"action input is a {type(value).__name__}, expected an object")
    return {str(k): v for k, v in value.items()}
