"""Canonical tool-use schema: tools, calls, messages, conversations.

Every loader produces `Conversation`s; every renderer, MAE detector, PKT weighting, reward and metric reads them.
Conversations serialise to plain JSON (`to_dict` / `from_dict`) so they can live in an HF `datasets` column.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null", "any")
_TYPE_ALIASES = {"str": "string", "int": "integer", "float": "number", "double": "number", "bool": "boolean",
                 "list": "array", "tuple": "array", "dict": "object", "none": "null", "": "any",
                 # BFCL's Java / JavaScript parameter types
                 "byte": "integer", "short": "integer", "long": "integer", "bigint": "integer", "char": "string",
                 "arraylist": "array", "queue": "array", "stack": "array", "hashmap": "object", "hashtable": "object"}
TOOL_NAME = re.compile(r"[\w.\-]+")
"""A tool name the call format can write and parse back: letters, digits, `_`, `.` and `-` (no spaces, quotes,
brackets or newlines, which would also change the rendered `def` line)."""


def known_type(raw: Any) -> bool:
    """A JSON-schema / BFCL / Python type name (or a list of them); None or "" means "not given"."""
    if isinstance(raw, list):
        return bool(raw) and all(isinstance(t, str) and known_type(t) for t in raw)
    return raw is None or isinstance(raw, str) and _TYPE_ALIASES.get(raw.strip().lower(), raw.strip().lower()) in \
        JSON_TYPES


def normalise_type(raw: Any) -> str:
    """Map JSON-schema / BFCL / Python type names onto the JSON-schema vocabulary ("dict" → "object", ...)."""
    if isinstance(raw, list):  # e.g. ["string", "null"]: the first non-null type wins
        raw = next((t for t in raw if t != "null"), "any")
    name = str(raw or "").strip().lower()
    name = _TYPE_ALIASES.get(name, name)
    return name if name in JSON_TYPES else "any"


@dataclass(frozen=True)
class ToolParam:
    """One parameter of a tool."""

    name: str
    type: str = "string"
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class ToolSpec:
    """A callable tool (JSON-schema function spec)."""

    name: str
    description: str = ""
    params: tuple[ToolParam, ...] = ()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.required)

    def to_openai(self) -> dict:
        """The OpenAI / JSON-schema function dict (what chat templates and most datasets use)."""
        props = {p.name: {"type": p.type, "description": p.description} for p in self.params}
        return {"name": self.name, "description": self.description,
                "parameters": {"type": "object", "properties": props, "required": list(self.required)}}

    @classmethod
    def from_openai(cls, spec: dict) -> "ToolSpec":
        """Parse an OpenAI-style spec (optionally wrapped as {"type": "function", "function": {...}}).

        Raises:
            ValueError: the spec is not a valid tool schema: a name that is not a `TOOL_NAME` or is a Python
                keyword; `parameters` that is not an object schema; a parameter schema that is not an object or
                has an unknown type; `required` that is not a list of declared parameter names.
        """
        if "function" in spec and isinstance(spec["function"], dict):
            spec = spec["function"]
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("tool spec without a 'name'")
        name = name.strip()
        if not TOOL_NAME.fullmatch(name) or any(keyword.iskeyword(part) for part in name.split(".")):
            raise ValueError(f"tool name {name[:60]!r} is not a callable name (letters, digits, _ . - ; no keyword)")
        props, required = _object_schema(name, spec.get("parameters"))
        params = []
        for pname, pspec in props.items():
            params.append(ToolParam(name=pname, type=normalise_type(pspec.get("type")),
                                    description=str(pspec.get("description") or ""), required=pname in required))
        # Required first, then optional: the order the paper's `def` rendering uses (paper.md §3.3).
        params.sort(key=lambda p: not p.required)
        return cls(name=name, description=str(spec.get("description") or ""), params=tuple(params))


def _object_schema(tool: str, params: Any) -> tuple[dict[str, dict], set[str]]:
    """(properties, required names) of a tool's `parameters`, validated (see `ToolSpec.from_openai`)."""
    if params is None or params == {}:
        return {}, set()
    where = f"tool {tool!r}: 'parameters'"
    if not isinstance(params, dict):
        raise ValueError(f"{where} is a {type(params).__name__}, expected an object schema")
    kind = params.get("type") or "object"
    if not isinstance(kind, str) or kind.lower() not in ("object", "dict"):
        raise ValueError(f"{where} has type {str(kind)[:40]!r}, expected 'object'")
    props = params.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError(f"{where}.properties is not an object")
    for pname, pspec in props.items():
        if not pname or not isinstance(pspec, dict):
            raise ValueError(f"{where}: parameter {pname[:40]!r} has no name or a schema that is not an object")
        if not known_type(pspec.get("type")):
            raise ValueError(f"{where}: parameter {pname[:40]!r} has unknown type {str(pspec.get('type'))[:40]!r}")
    required = params.get("required") or []
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ValueError(f"{where}.required is not a list of parameter names")
    undeclared = [r for r in required if r not in props]
    if undeclared:
        raise ValueError(f"{where}.required names undeclared parameter(s) {undeclared[:3]}")
    return props, set(required)


@dataclass(frozen=True)
class ToolCall:
    """A call of a tool by name with keyword arguments (JSON-compatible values)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, d: dict) -> "ToolCall":
        return cls(name=d["name"], arguments=dict(d.get("arguments") or {}))


@dataclass(frozen=True)
class Message:
    """One turn. Assistant turns carry structured `calls` (and optional free-text `content`, e.g. a thought);
    tool turns carry the tool's output in `content`."""

    role: Role
    content: str = ""
    calls: tuple[ToolCall, ...] = ()

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.calls:
            d["calls"] = [c.to_dict() for c in self.calls]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Message":
        return cls(role=d["role"], content=d.get("content") or "",
                   calls=tuple(ToolCall.from_dict(c) for c in d.get("calls") or ()))


@dataclass(frozen=True)
class RotbenchGold:
    """What RoTBench's `evaluate.py` reads, kept raw by the loader for the official scoring mode.

    Attributes:
        answers: the gold answer strings (`Thought:\nAction: ...\nAction Input: {...}`), as in the file.
        tool_names: the tool names the script reads from the system prompt (its `finish` rule uses the last).
    """

    answers: tuple[str, ...]
    tool_names: tuple[str | None, ...] | None


@dataclass(frozen=True)
class BfclGold:
    """What BFCL's checker reads, kept raw by the loader.

    Attributes:
        category: the BFCL category ("simple", "live_parallel", ...): the checker's rules depend on it.
        functions: the raw function documents (the checker reads types our `ToolSpec` folds together).
        possible_answer: per gold call, `{name: {param: [acceptable values]}}` ("" = may be omitted); None for
            irrelevance (no call expected) and exec categories (a call string, already in `Conversation.gold`).
    """

    category: str
    functions: tuple[dict, ...]
    possible_answer: tuple[dict, ...] | None = None


@dataclass(frozen=True)
class Conversation:
    """A tool-use conversation.

    `messages` is the context (and, for training data, the full trajectory). `gold`, when present, lists the
    acceptable answers for the *next* assistant step after `messages`; each answer is a list of calls (several
    for parallel calls). Benchmarks (RoTBench, BFCL) give several acceptable answers; training data gives none.

    Typed fields carry what other layers read: `free_text_tools` (the finish / ask-the-user tools of this
    conversation when noise renamed them; None: the scorer's default set) and `benchmark_gold` (what a benchmark's
    official scorer reads). `meta` is for provenance only (noise level, scenario, API name): nothing scores by it.
    """

    id: str
    tools: tuple[ToolSpec, ...]
    messages: tuple[Message, ...]
    gold: tuple[tuple[ToolCall, ...], ...] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    free_text_tools: tuple[str, ...] | None = None
    benchmark_gold: RotbenchGold | BfclGold | None = None

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def to_dict(self) -> dict:
        d = {
            "id": self.id,
            "tools": [_tool_to_dict(t) for t in self.tools],
            "messages": [m.to_dict() for m in self.messages],
            "gold": None if self.gold is None else [[c.to_dict() for c in ans] for ans in self.gold],
            "source": self.source,
            "meta": self.meta,
        }
        if self.free_text_tools is not None:  # the optional fields only when set: an item's size is its content's
            d["free_text_tools"] = list(self.free_text_tools)
        if self.benchmark_gold is not None:
            d["benchmark_gold"] = _benchmark_gold_to_dict(self.benchmark_gold)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Conversation":
        gold = d.get("gold")
        return cls(
            id=d["id"],
            tools=tuple(_tool_from_dict(t) for t in d["tools"]),
            messages=tuple(Message.from_dict(m) for m in d["messages"]),
            gold=None if gold is None else tuple(tuple(ToolCall.from_dict(c) for c in ans) for ans in gold),
            source=d.get("source", ""),
            meta=dict(d.get("meta") or {}),
            free_text_tools=None if d.get("free_text_tools") is None else tuple(d["free_text_tools"]),
            benchmark_gold=_benchmark_gold_from_dict(d.get("benchmark_gold")),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "Conversation":
        return cls.from_dict(json.loads(s))


def _benchmark_gold_to_dict(g: RotbenchGold | BfclGold | None) -> dict | None:
    if isinstance(g, RotbenchGold):
        return {"scorer": "rotbench", "answers": list(g.answers),
                "tool_names": None if g.tool_names is None else list(g.tool_names)}
    if isinstance(g, BfclGold):
        return {"scorer": "bfcl", "category": g.category, "functions": list(g.functions),
                "possible_answer": None if g.possible_answer is None else list(g.possible_answer)}
    return None


def _benchmark_gold_from_dict(d: dict | None) -> RotbenchGold | BfclGold | None:
    if not d:
        return None
    if d["scorer"] == "rotbench":
        names = d.get("tool_names")
        return RotbenchGold(tuple(d["answers"]), None if names is None else tuple(names))
    answer = d.get("possible_answer")
    return BfclGold(d["category"], tuple(d["functions"]), None if answer is None else tuple(answer))


def _tool_to_dict(t: ToolSpec) -> dict:
    return {"name": t.name, "description": t.description,
            "params": [{"name": p.name, "type": p.type, "description": p.description, "required": p.required}
                       for p in t.params]}


def _tool_from_dict(d: dict) -> ToolSpec:
    return ToolSpec(name=d["name"], description=d.get("description", ""),
                    params=tuple(ToolParam(**p) for p in d.get("params", ())))


def stable_id(*parts: Any) -> str:
    """A short deterministic id from the given parts (same input → same id across runs and machines)."""
    h = hashlib.sha1(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8"))
    return h.hexdigest()[:12]
