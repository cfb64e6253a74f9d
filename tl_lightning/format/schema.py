"""Canonical tool-use schema: tools, calls, messages, conversations.

Every loader produces `Conversation`s; every renderer, MAE detector, PKT weighting, reward and metric reads them.
Conversations serialise to plain JSON (`to_dict` / `from_dict`) so they can live in an HF `datasets` column.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null", "any")
_TYPE_ALIASES = {"str": "string", "int": "integer", "float": "number", "double": "number", "bool": "boolean",
                 "list": "array", "tuple": "array", "dict": "object", "none": "null", "": "any"}


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
            ValueError: the spec has no usable name or malformed parameters.
        """
        if "function" in spec and isinstance(spec["function"], dict):
            spec = spec["function"]
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("tool spec without a 'name'")
        params_obj = spec.get("parameters") or {}
        if not isinstance(params_obj, dict):
            raise ValueError(f"tool {name!r}: 'parameters' is {type(params_obj).__name__}, expected an object")
        props = params_obj.get("properties") or {}
        if not isinstance(props, dict):
            raise ValueError(f"tool {name!r}: 'parameters.properties' is not an object")
        required = params_obj.get("required") or []
        if not isinstance(required, list):
            required = []
        params = []
        for pname, pspec in props.items():
            pspec = pspec if isinstance(pspec, dict) else {}
            params.append(ToolParam(name=str(pname), type=normalise_type(pspec.get("type")),
                                    description=str(pspec.get("description") or ""),
                                    required=pname in required))
        # Required first, then optional: the order the paper's `def` rendering uses (paper.md §3.3).
        params.sort(key=lambda p: not p.required)
        return cls(name=name.strip(), description=str(spec.get("description") or ""), params=tuple(params))


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
class Conversation:
    """A tool-use conversation.

    `messages` is the context (and, for training data, the full trajectory). `gold`, when present, lists the
    acceptable answers for the *next* assistant step after `messages`; each answer is a list of calls (several
    for parallel calls). Benchmarks (RoTBench, BFCL) give several acceptable answers; training data gives none.
    """

    id: str
    tools: tuple[ToolSpec, ...]
    messages: tuple[Message, ...]
    gold: tuple[tuple[ToolCall, ...], ...] | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "tools": [_tool_to_dict(t) for t in self.tools],
            "messages": [m.to_dict() for m in self.messages],
            "gold": None if self.gold is None else [[c.to_dict() for c in ans] for ans in self.gold],
            "source": self.source,
            "meta": self.meta,
        }

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
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> "Conversation":
        return cls.from_dict(json.loads(s))


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
