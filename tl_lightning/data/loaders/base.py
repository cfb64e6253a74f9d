"""Shared loader machinery: reading files safely, the `on_error` policy, and the skip report.

Every loader turns raw items into `Conversation`s through `convert_items`, which applies the policy:
`on_error="raise"` stops at the first bad item with a `DataError` naming file and item/line; `"skip"` counts the
item under its reason in a `LoadReport` and logs a summary. Nothing is dropped without being counted.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tl_lightning.core.errors import DataError
from tl_lightning.format.call_format import parse_calls
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec

log = logging.getLogger(__name__)
OnError = Literal["raise", "skip"]


class ItemError(ValueError):
    """A single item cannot be converted; the message is the (short, countable) reason, `detail` what in the item
    (e.g. the tool name), shown in the report's examples and in the on_error "raise" message, not in the count."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.detail = detail


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice (`json.loads` would silently keep the last value)."""


@dataclass
class LoadReport:
    """How many items a load produced and why others were skipped (reason → count, first examples kept)."""

    source: str
    path: str
    loaded: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {reason}")

    def note(self, what: str, n: int = 1) -> None:
        """Count a non-fatal fix-up (e.g. a repaired gold answer) so it is visible in the report."""
        self.notes[what] += n

    def merge(self, other: "LoadReport") -> None:
        self.loaded += other.loaded
        self.skipped.update(other.skipped)
        self.notes.update(other.notes)
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])

    def summary(self) -> str:
        s = f"{self.source} {self.path}: loaded {self.loaded}, skipped {self.total_skipped}"
        if self.skipped:
            s += " (" + ", ".join(f"{r}: {n}" for r, n in self.skipped.most_common()) + ")"
        if self.notes:
            s += "; notes: " + ", ".join(f"{r}: {n}" for r, n in self.notes.most_common())
        return s

    def log(self) -> None:
        (log.warning if self.skipped else log.info)(self.summary())

    def to_dict(self) -> dict:
        return {"loaded": self.loaded, "skipped": dict(self.skipped), "notes": dict(self.notes),
                "examples": self.examples}

    @classmethod
    def from_dict(cls, source: str, path: str, d: dict) -> "LoadReport":
        return cls(source, path, d["loaded"], Counter(d["skipped"]), Counter(d["notes"]), list(d["examples"]))


def read_text(path: str | Path) -> str:
    """Read a UTF-8 file, with one clear error for a missing file or undecodable bytes."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p} (check the path in your config or command)")
    raw = p.read_bytes()
    if not raw.strip():
        raise DataError(f"{p}: the file is empty ({len(raw)} bytes); expected JSON or JSON Lines")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 1]
        raise DataError(f"{p}: not UTF-8 (byte {e.start}: {bad!r}); re-encode the file as UTF-8") from None


def loads(text: str, unique_keys: bool = False) -> Any:
    """`json.loads` whose every failure is a `ValueError` with a short reason: syntax errors keep their position;
    nesting beyond Python's recursion limit (`RecursionError`) and over-long integers become "nested too deeply" /
    the int-size message. With `unique_keys`, an object naming a key twice raises `DuplicateKeyError`."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except DuplicateKeyError:
        raise
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON at line {e.lineno} col {e.colno}: {e.msg}") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None
    except ValueError as e:  # e.g. an integer literal longer than Python's int-size limit
        raise ValueError(f"invalid JSON: {str(e)[:80]}") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKeyError(next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


def read_json(path: str | Path) -> Any:
    text = read_text(path)
    try:
        return loads(text)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None


def read_json_list(path: str | Path) -> list[tuple[str, Any]]:
    """Items of a file holding one JSON list (`item N`)."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: a JSON {type(data).__name__}, expected a list of items")
    return [(f"item {i}", x) for i, x in enumerate(data)]


def read_json_or_jsonl(path: str | Path, report: LoadReport, on_error: OnError) -> list[tuple[str, Any]]:
    """Items of a JSON list (`item N`) or a JSONL file (`line N`, one object a line); bad JSONL lines follow the
    policy, a bad JSON document is a `DataError`, and so is one object spread over several lines: that is neither
    layout (often a wrapper such as `{"data": [...]}`), and reading it as one item would hide the mistake."""
    text = read_text(path)
    stripped = text.strip()
    if stripped.startswith("[") and Path(path).suffix != ".jsonl":
        return read_json_list(path)
    if stripped.startswith("{") and "\n" in stripped:
        try:
            document = loads(stripped)
        except ValueError:
            document = None  # not one JSON document: read it as JSON Lines below
        if isinstance(document, dict):
            raise DataError(f"{path}: one JSON object spanning {stripped.count(chr(10)) + 1} lines; expected a JSON "
                            f"list of items or JSON Lines (one item per line); keys: {', '.join(list(document)[:5])}")
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((f"line {lineno}", loads(line)))
        except ValueError as e:
            if on_error == "raise":
                raise DataError(f"{path}: line {lineno}: {e}") from None
            report.skip(f"line {lineno}", "invalid JSON line" + (" (nested too deeply)" if "deeply" in str(e) else ""))
    return items


def convert_items(items: Iterable[tuple[str, Any]], convert: Callable[[str, Any], Iterable[Conversation]],
                  report: LoadReport, on_error: OnError, file: str | Path | None = None) -> Iterator[Conversation]:
    """Apply `convert(where, item)` to each item under the `on_error` policy, counting loads and skips; a
    `DataError` names `file` (default: the report's path) and the item.

    Every conversation must also serialise to UTF-8 JSON (what the datasets cache and tokenizers need): a lone
    surrogate (`"\\ud800"` in the file) or nesting too deep to serialise is an item error, not a later crash.
    """
    for where, item in items:
        try:
            convs = [_serialisable(c) for c in convert(where, item)]
        except (ItemError, KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as e:
            reason = str(e) if isinstance(e, ItemError) else f"malformed item ({type(e).__name__}: {str(e)[:120]})"
            if isinstance(e, RecursionError):
                reason = "malformed item (nested too deeply)"
            detail = getattr(e, "detail", "")
            if on_error == "raise":
                raise DataError(f"{file or report.path}: {where}: {reason}{f' ({detail})' if detail else ''} "
                                "(use on_error: skip to count and skip such items)") from None
            report.skip(f"{where} ({detail})" if detail else where, reason)
            continue
        report.loaded += len(convs)
        yield from convs


def _serialisable(conv: Conversation) -> Conversation:
    try:
        conv.to_json().encode("utf-8")
    except UnicodeEncodeError as e:
        raise ItemError(f"invalid Unicode (lone surrogate {e.object[e.start:e.end]!r})") from None
    return conv


def require_items(report: LoadReport, loaded_before: int, what: str) -> None:
    """A load that produced nothing is a `DataError` with the skip counts (else an empty dataset fails much later,
    e.g. `datasets`' "SchemaInferenceError")."""
    if report.loaded == loaded_before:
        reasons = ", ".join(f"{r}: {n}" for r, n in report.skipped.most_common(5)) or "no items in the file"
        raise DataError(f"{what}: no usable items (loaded 0, skipped {report.total_skipped}: {reasons}); "
                        "check the file's format and the data format in your config")


def parse_tools(specs: Any) -> tuple[ToolSpec, ...]:
    """Parse a list of OpenAI-style specs. A name declared twice is an item error: which spec the model should see
    (and the gold be checked against) is ambiguous, and keeping one would change the benchmark's prompt."""
    if not isinstance(specs, list):
        raise ItemError(f"tool list is a {type(specs).__name__}, expected a list")
    tools: dict[str, ToolSpec] = {}
    for spec in specs:
        if not isinstance(spec, dict):
            raise ItemError("tool spec is not an object")
        try:
            tool = ToolSpec.from_openai(spec)
        except ValueError as e:
            raise ItemError(str(e)) from None
        if tool.name in tools:
            raise ItemError("duplicate tool name", detail=repr(tool.name[:60]))
        tools[tool.name] = tool
    return tuple(tools.values())


def parse_call_text(text: str) -> tuple[ToolCall, ...]:
    """Parse an assistant call string from a dataset; a parse failure is an item error with its reason."""
    result = parse_calls(text)
    if not result.ok:
        raise ItemError(f"assistant turn is not a parseable call ({result.failure.kind})")
    return result.calls


def check_turns(messages: list[Message]) -> None:
    """Tool output answers a call: a tool turn before any assistant call is an item error (it would be trained as
    the context of nothing, and MAE would judge it against no call)."""
    called = False
    for m in messages:
        called = called or (m.role == "assistant" and bool(m.calls))
        if m.role == "tool" and not called:
            raise ItemError("tool output before any tool call")


def check_gold_offered(gold: Iterable[Iterable[ToolCall]], tools: Iterable[ToolSpec]) -> None:
    """Every gold call names an offered tool; else the item cannot be scored fairly (counted skip)."""
    offered = {t.name for t in tools}
    missing = sorted({c.name for answer in gold for c in answer} - offered)
    if missing:
        raise ItemError(f"gold calls a tool that is not offered ({missing[0][:60]!r})")


def check_gold_arguments(gold: Iterable[Iterable[ToolCall]], tools: Iterable[ToolSpec]) -> None:
    """A gold call passing arguments to a tool that declares no parameters is an item error: the tool's schema is
    missing (e.g. `parameters` misspelled or not in the file), so no model could learn or be scored on it."""
    bare = {t.name for t in tools if not t.params}
    for answer in gold:
        for call in answer:
            if call.name in bare and call.arguments:
                raise ItemError("gold passes arguments to a tool that declares no parameters",
                                detail=f"{call.name[:60]!r} gets {', '.join(list(call.arguments)[:3])}")


def text_content(content: Any) -> str:
    """A message's content as text: None is empty; anything else that is not a string (an object, a list) is an item
    error, not a Python repr or a JSON dump that would be trained and scored as if the file had written it."""
    if content is None:
        return ""
    if not isinstance(content, str):
        raise ItemError("message content is not text", detail=f"a JSON {type(content).__name__}")
    return content


def check_length(conv: Conversation, max_chars: int | None) -> Conversation:
    if max_chars is not None:
        size = len(conv.to_json())
        if size > max_chars:
            raise ItemError(f"item longer than max_chars ({max_chars})")
    return conv
