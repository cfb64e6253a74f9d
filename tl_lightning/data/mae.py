"""MAE (mitigating adverse effects): detect tool outputs that signal an error, and block the assistant call that
caused them from the loss while keeping it (and its output) in the context of later steps (paper.md §3).

Detectors (components chosen in YAML as `data.init_args.mae.detector`) map a tool output to a
`Detection(is_error, category, reason)`:
  * `ReferenceDetector` — the paper code's marker list (code/mae/mae.py) with its normalisation: delete every
    character except CJK, ASCII letters, digits and `^`, lower-case, substring match. Quirk, reproduced on
    purpose: the markers `"error":` and `'error'` normalise to the bare word `error`, so *any* output containing
    "error" anywhere (e.g. "no errors", or RoTBench's success payloads with `"error": ""`) counts as an error.
  * `StructuredDetector` (default) — what the paper meant: a non-empty JSON `error` / `errors` field or a 4xx/5xx
    status anywhere in the first levels of a JSON reply, Python exception messages (NameError "is not defined",
    TypeError "missing … positional argument" / "unexpected keyword argument", other `XxxError:` lines, common
    messages printed without their class, a bare `'key'` from a KeyError), an unknown tool ("Function 'x' does not
    exist"), HTTP 4xx/5xx lines, "not supported".
  * `RegexDetector` — user patterns from the config; `AnyDetector` — the first of several that fires.
"""

from __future__ import annotations

import ast
import json
import re
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Literal

from tl_lightning.format.schema import Conversation, Message


@dataclass(frozen=True)
class Detection:
    is_error: bool
    category: str = "ok"
    reason: str = ""


OK = Detection(False)


class ErrorDetector(ABC):
    """Decides whether a tool output signals that the call which caused it failed."""

    @abstractmethod
    def __call__(self, output: str) -> Detection: ...


_REFERENCE_MARKERS = ('"error":', "'error'", "is not defined", "positional argument", "unexpected keyword",
                      "'related_searches'", "ConnectionError", "connection error", "not supported", "Invalid API call",
                      "Response error", "Object of type SerpResults is not JSON serializable", "400 Client Error",
                      "slice indices must be integers or None or have an __index__ method")
_NON_KEPT = re.compile(r"[^\u4e00-\u9fa5a-zA-Z0-9^]")


def _normalise(text: str) -> str:
    return _NON_KEPT.sub("", text).lower()


@dataclass(frozen=True)
class ReferenceDetector(ErrorDetector):
    """The paper code's substring list after normalisation (faithful, over-inclusive; see module doc)."""

    def __call__(self, output: str) -> Detection:
        norm = _normalise(output)
        for marker in _REFERENCE_MARKERS:
            key = _normalise(marker)
            if key in norm:
                return Detection(True, "reference_marker", f"contains {marker!r} (normalised {key!r})")
        return OK


_TEXT_ERRORS = [
    (re.compile(r"name '[^']+' is not defined|\bname [A-Za-z_][\w.]* is not defined"), "tool_hallucination"),
    # a tool runtime's answer to an unknown tool: "Function 'translate_text' does not exist."
    (re.compile(r"\b(?:function|tool) (?:'[^'\n]{1,100}'|\"[^\"\n]{1,100}\"|`[^`\n]{1,100}`|[A-Za-z_][\w.\-]*) "
                r"(?:does not|doesn't) exist\b", re.I), "tool_hallucination"),
    (re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?"), "missing_parameter"),
    (re.compile(r"got an unexpected keyword argument"), "unexpected_parameter"),
    (re.compile(r"\b(?:positional argument|takes \d+ positional)"), "parameter_error"),
    (re.compile(r"\b(?:[4-5]\d\d) (?:Client|Server) Error\b|\bHTTP(?:Error)?\s*[4-5]\d\d\b"
                r"|status(?: code)?[:= ]+[4-5]\d\d\b|<title>\s*(?:Forbidden|Unauthorized|Not Found|Bad Request)\b"
                r"|\bconnection ?error\b|\bread timed out\b", re.I), "http_error"),
    (re.compile(r"\binvalid api call\b|\bresponse error\b|\binvalid url\b|\bno scheme supplied\b", re.I), "api_error"),
    (re.compile(r"\bnot supported\b", re.I), "not_supported"),
    (re.compile(r"^(?:Traceback \(most recent call last\)|[A-Z]\w*(?:Error|Exception)\b:)", re.M), "exception"),
    (re.compile(r"^\s*(?:error|exception)\s*:", re.I | re.M), "error_line"),  # "Error: city not found"
    # Python exception messages printed without their class (seen in RoTBench / ToolEyes tool outputs)
    (re.compile(r"slice indices must be integers|is not JSON serializable|object is not subscriptable|"
                r"object has no attribute|unsupported operand type|invalid literal for int\(\)|"
                r"list index out of range|division by zero|object is not callable|can't multiply sequence|"
                r"referenced before assignment|unsupported type for|not supported between instances|"
                r"^/bin/(?:ba)?sh: ", re.M), "exception"),
    (re.compile(r"\A\s*'[A-Za-z_][\w.-]*'\s*\Z"), "key_error"),  # str(KeyError('related_searches'))
    (re.compile(r"\bexceeded the rate limit\b|\brate limit exceeded\b|\btry again\b|\A\s*not found\s*\Z", re.I),
     "api_error"),
]
"""Checked on plain-text outputs, and on the message of a reply that is only a message (never on data values)."""
_MESSAGE_ERRORS = re.compile(r"\bmust be an? \w+|\bunrecognized\b|\bunknown \w+|\bdoes not exist\b|\bnot found\b|"
                             r"\binvalid\b|\bexceeded\b|\bdenied\b|\bnot authori[sz]ed\b|\bunauthori[sz]ed\b", re.I)
"""Further phrases that signal a failed call when they are the whole reply (`{"message": "unknown service x"}`)."""
_ERROR_KEYS = ("error", "Error", "errors", "error_message", "errorMessage")
_MESSAGE_KEYS = {"message", "Message", "msg", "detail", "Note", "note", "text", "type"}
_FAILED_STATUS = {"error", "fail", "failed", "failure"}
_TRUNCATED_ERROR_FIELD = re.compile(r'\A\{\s*"error"\s*:\s*"([^"]+)"')  # ToolBench cuts replies at 1,024 chars
MAX_STRUCTURED_CHARS = 200_000
"""Longer replies are not parsed as JSON / Python literals (bounded time); text patterns still apply."""


def _json_error(obj, depth: int = 0) -> Detection | None:
    """A non-empty error field, a 4xx/5xx or failure status, or `success: false` in the first levels of a reply."""
    if depth > 3:
        return None
    if isinstance(obj, list):
        return next((d for d in (_json_error(x, depth + 1) for x in obj[:50]) if d), None)
    if not isinstance(obj, dict):
        return None
    for key in _ERROR_KEYS:
        err = obj.get(key)
        if err not in (None, "", [], {}, False, 0):
            return Detection(True, "error_field", f"{key}: {str(err)[:120]}")
    for key in ("status_code", "status", "statusCode", "code"):
        status = obj.get(key)
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 600:
            return Detection(True, "http_error", f"{key} {status}")
        if isinstance(status, str) and status.strip().lower() in _FAILED_STATUS:
            return Detection(True, "error_field", f"{key}: {status}")
    if obj.get("success") is False:
        return Detection(True, "error_field", "success: false")
    return next((d for d in (_json_error(v, depth + 1) for v in obj.values() if isinstance(v, (dict, list))) if d),
                None)


def _parse_reply(text: str):
    """A reply as JSON, else as a Python literal (`str(dict)` replies, ToolBench); None when it is neither."""
    if text[:1] not in "{[" or len(text) > MAX_STRUCTURED_CHARS:
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text)  # literals only: never evaluates code
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _text_error(text: str) -> Detection | None:
    for pattern, category in _TEXT_ERRORS:
        m = pattern.search(text)
        if m:
            return Detection(True, category, m.group(0)[:120])
    return None


def _message_only(obj: dict) -> str | None:
    """The text of a reply that holds nothing but a message (a notice or an error, not data)."""
    if not obj or not set(obj) <= _MESSAGE_KEYS:
        return None
    return " ".join(v if isinstance(v, str) else json.dumps(v, default=str) for v in obj.values())


@dataclass(frozen=True)
class StructuredDetector(ErrorDetector):
    """Error field / exception / HTTP-status based detection (see module doc).

    A JSON or Python-literal reply is judged by its structure (error fields, failure statuses); its data values
    are never searched for words, so a result that merely mentions "error" is not an error. The text patterns
    apply to plain-text replies, to a reply that is only a message, and to ToolBench's wrapped `response` text.
    """

    def __call__(self, output: str, _depth: int = 0) -> Detection:
        text = output.strip()
        obj = _parse_reply(text)
        if obj is None:
            truncated = _TRUNCATED_ERROR_FIELD.match(text)
            if truncated:
                return Detection(True, "error_field", f"error: {truncated.group(1)[:120]}")
            return _text_error(text) or OK
        hit = _json_error(obj)
        if hit:
            return hit
        if not isinstance(obj, dict):
            return OK
        inner = obj.get("response")
        if isinstance(inner, str) and set(obj) <= {"error", "response"} and _depth == 0:
            return self(inner, 1) if inner.strip() else OK  # ToolBench wraps API replies as {"error", "response"}
        message = _message_only(obj)
        if message is not None:
            hit = _text_error(message)
            if hit or not _MESSAGE_ERRORS.search(message):
                return hit or OK
            return Detection(True, "api_error", _MESSAGE_ERRORS.search(message).group(0))
        return OK


@dataclass(frozen=True)
class RegexDetector(ErrorDetector):
    """User-supplied regular expressions (searched, case-insensitive).

    Args:
        patterns: a tool output matching any of them is an error.
    """

    patterns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"RegexDetector: invalid pattern {p!r}: {e}") from None

    def __call__(self, output: str) -> Detection:
        for p in self.patterns:
            if re.search(p, output, flags=re.IGNORECASE):
                return Detection(True, "user_pattern", f"matches {p!r}")
        return OK


@dataclass(frozen=True)
class AnyDetector(ErrorDetector):
    """The first detector that fires wins (e.g. `StructuredDetector` plus your own `RegexDetector`).

    Args:
        detectors: tried in order.
    """

    detectors: tuple[ErrorDetector, ...] = ()

    def __call__(self, output: str) -> Detection:
        for d in self.detectors:
            hit = d(output)
            if hit.is_error:
                return hit
        return OK


@dataclass
class MAESettings:
    """MAE settings for SFT data."""

    detector: ErrorDetector | None = field(default_factory=StructuredDetector)
    """Which tool outputs are errors: `StructuredDetector` (ours), `ReferenceDetector` (the paper code's substring
    list), `RegexDetector`, `AnyDetector` of several; null = none (standard SFT)."""
    mode: Literal["mask", "drop_turn", "drop_conversation"] = "mask"
    """mask: no loss on the erroneous call, kept in context (the paper); drop_turn: remove the call and its
    output from the conversation; drop_conversation: skip conversations with any erroneous call."""


def erroneous_turns(conv: Conversation, detector: ErrorDetector | None) -> dict[int, Detection]:
    """Assistant message index → detection, for assistant calls whose following tool output(s) signal an error."""
    out: dict[int, Detection] = {}
    if detector is None:
        return out
    msgs = conv.messages
    for i, m in enumerate(msgs):
        if m.role != "assistant" or not m.calls:
            continue
        j = i + 1
        while j < len(msgs) and msgs[j].role == "tool":
            hit = detector(msgs[j].content)
            if hit.is_error:
                out[i] = hit
                break
            j += 1
    return out


def apply_mae(conv: Conversation, settings: MAESettings, counts: Counter | None = None
              ) -> tuple[Conversation | None, frozenset[int]]:
    """Apply MAE: returns (conversation or None if dropped, assistant message indices to block from the loss).

    `counts` (if given) accumulates `category → n` over erroneous calls, plus `conversations_dropped`.
    """
    hits = erroneous_turns(conv, settings.detector)
    if counts is not None:
        counts.update(h.category for h in hits.values())
    if not hits:
        return conv, frozenset()
    if settings.mode == "mask":
        return conv, frozenset(hits)
    if settings.mode == "drop_conversation":
        if counts is not None:
            counts["conversations_dropped"] += 1
        return None, frozenset()
    kept: list[Message] = []
    skip_tools = False
    for i, m in enumerate(conv.messages):  # drop_turn: the call and the tool outputs that answer it
        if i in hits:
            skip_tools = True
            continue
        if skip_tools and m.role == "tool":
            continue
        skip_tools = False
        kept.append(m)
    return replace(conv, messages=tuple(kept)), frozenset()
