"""Loaders for conversation-style files: TL-Training/RoTLLaMA `conversations`, RoTBench, OpenAI `messages`,
ToolBench answer trees. Formats: ../shared/docs/data.md §2, §5; paper.md §3.3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_lightning.data.loaders.base import (
    DuplicateKeyError,
    ItemError,
    LoadReport,
    OnError,
    check_gold_arguments,
    check_gold_offered,
    check_length,
    check_turns,
    convert_items,
    loads,
    parse_call_text,
    parse_tools,
    read_json,
    read_json_list,
    read_json_or_jsonl,
    text_content,
)
from tl_lightning.format.call_format import parse_calls
from tl_lightning.format.schema import Conversation, Message, RotbenchGold, ToolCall, stable_id

_ROLE_MAP = {"system": "system", "developer": "system", "user": "user", "human": "user", "assistant": "assistant",
             "gpt": "assistant", "function": "tool", "tool": "tool", "observation": "tool", "ipython": "tool"}


@dataclass(frozen=True)
class TurnStyle:
    """How a format writes its turns: the (role, content) keys and the role names it uses (None: any of both)."""

    name: str
    keys: tuple[str, str] | None = None
    roles: frozenset[str] | None = None


ANY_STYLE = TurnStyle("conversations")
"""TL-Training / RoTLLaMA / ShareGPT files: role|from, content|value, every role name of `_ROLE_MAP`."""
REACT_STYLE = TurnStyle("RoTBench/ToolEyes", ("from", "value"), frozenset({"system", "user", "assistant", "function"}))
OPENAI_STYLE = TurnStyle("OpenAI", ("role", "content"),
                         frozenset({"system", "developer", "user", "assistant", "tool", "function"}))
TOOLBENCH_STYLE = TurnStyle("ToolBench", ("role", "content"), frozenset({"system", "user", "assistant", "function"}))
BFCL_STYLE = TurnStyle("BFCL", ("role", "content"), frozenset({"system", "user", "assistant"}))


def _role_content(m: Any, style: TurnStyle = ANY_STYLE) -> tuple[str, Any]:
    """(canonical role, raw content) of one turn, in the keys and role names of `style`: a turn in another
    format's spelling (role/content in a RoTBench file, role "human" in an OpenAI file) is an item error, since it
    means the file is not the format it is loaded as (and e.g. RoTBench's official scoring reads `value`)."""
    if not isinstance(m, dict):
        raise ItemError("message is not an object")
    if style.keys is None:
        role, content = m.get("role", m.get("from")), m.get("content", m.get("value"))
    else:
        role_key, content_key = style.keys
        other = ("role", "content") if style.keys == ("from", "value") else ("from", "value")
        if role_key not in m and other[0] in m:
            raise ItemError(f"turn written as {'/'.join(other)}", detail=f"{style.name} turns use {role_key}/"
                            f"{content_key}")
        role, content = m.get(role_key), m.get(content_key)
    if role is None:
        raise ItemError("message without a role")
    if style.roles is not None and str(role).lower() not in style.roles:
        raise ItemError("role outside the format's roles",
                        detail=f"{str(role)[:40]!r}; {style.name} uses {', '.join(sorted(style.roles))}")
    mapped = _ROLE_MAP.get(str(role).lower())
    if mapped is None:
        raise ItemError(f"unknown role {role!r}")
    return mapped, content


def tools_from_system(text: str):
    """Tools from a system message: a JSON list, or a prompt with a JSON list inside (RoTBench/ToolEyes ReAct)."""
    if not isinstance(text, str):
        raise ItemError("system message is not text")
    try:
        specs = loads(text)
    except ValueError:  # not a bare tool list: look for one inside the prompt
        specs = None
    if isinstance(specs, list):
        return parse_tools(specs)
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        raise ItemError("system message holds no JSON tool list")
    try:
        specs = loads(text[start:end + 1])
    except ValueError:
        raise ItemError("system message tool list is not valid JSON") from None
    return parse_tools(specs)


def _assistant_message(content: Any) -> Message:
    if not isinstance(content, str) or not content.strip():
        raise ItemError("assistant turn without content")
    result = parse_calls(content)
    if not result.ok:
        raise ItemError(f"assistant turn is not a parseable call ({result.failure.kind})")
    return Message("assistant", content=result.thought, calls=result.calls)


def _convert_turns(raw: list, style: TurnStyle = ANY_STYLE) -> tuple[tuple, list[Message]]:
    """(tools from the system message, the other turns). A second system message is an item error: its tool list
    (or text) would otherwise be dropped."""
    tools: tuple = ()
    messages: list[Message] = []
    systems = 0
    for m in raw:
        role, content = _role_content(m, style)
        if role == "system":
            systems += 1
            if systems > 1:
                raise ItemError("more than one system message")
            tools = tools_from_system(content or "")
        elif role == "assistant":
            messages.append(_assistant_message(content))
        else:
            messages.append(Message(role, content=text_content(content)))
    check_turns(messages)
    return tools, messages


def load_conversations(path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                       report: LoadReport | None = None) -> Iterator[Conversation]:
    """TL-Training / RoTLLaMA style: `[{"id", "conversations": [{role|from, content|value}]}]`.

    The system message is a JSON list of OpenAI function specs; assistant turns are `name\\n{json}` (or any form
    `parse_calls` accepts); role `function` is the tool output.
    """
    report = report or LoadReport("conversations", str(path))

    def convert(where: str, item: Any):
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not turns:
            raise ItemError("empty conversation")
        tools, messages = _convert_turns(turns)
        if not any(m.role == "assistant" for m in messages):
            raise ItemError("conversation without an assistant turn")
        cid = str(item.get("id") or stable_id(str(path), where))
        yield check_length(Conversation(cid, tools, tuple(messages), source="conversations"), max_chars)

    yield from convert_items(read_json_or_jsonl(path, report, on_error), convert, report, on_error)


def load_rotbench(path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                  report: LoadReport | None = None) -> Iterator[Conversation]:
    """RoTBench First_Turn / Third_Turn file (any noise level). Gold = the list of acceptable answers.

    `meta`: scenario, noise level (from the file name), turn (First/Third, from the parent folder).
    """
    p = Path(path)
    report = report or LoadReport("rotbench", str(p))
    meta = {"noise": p.stem, "turn": p.parent.name}

    def convert(where: str, item: Any):
        turns = item["conversations"]
        if not isinstance(turns, list) or len(turns) < 3:
            raise ItemError("fewer than 3 turns (system, user, gold)")
        tools, messages = _convert_turns(turns[:-1], REACT_STYLE)
        role, gold_raw = _role_content(turns[-1], REACT_STYLE)
        if role != "assistant":
            raise ItemError("last turn is not the assistant gold")
        gold = _rotbench_gold(gold_raw)
        check_gold_offered(gold, tools)
        check_gold_arguments(gold, tools)
        system = turns[0].get("value")
        names = official_tool_names(system) if isinstance(system, str) else None
        official = RotbenchGold(tuple(gold_raw), None if names is None else tuple(names))
        yield check_length(Conversation(str(item["id"]), tools, tuple(messages), tuple(gold), "rotbench",
                                        {**meta, "scenario": item.get("scenario", "")}, benchmark_gold=official),
                           max_chars)

    yield from convert_items(read_json_list(p), convert, report, on_error)


def _rotbench_gold(gold_raw: Any) -> list[tuple[ToolCall, ...]]:
    """The acceptable answers. One that does not parse makes the item an error: dropping it would score a
    prediction matching it as wrong in lenient mode while the official mode (which reads the raw strings) accepts
    it."""
    alternatives = gold_raw if isinstance(gold_raw, list) else [gold_raw]
    gold = []
    for i, alt in enumerate(alternatives):
        try:
            gold.append(parse_call_text(alt))
        except ItemError as e:
            if len(alternatives) == 1:
                raise ItemError("no parseable gold answer", detail=str(e)) from None
            raise ItemError("a gold alternative is not a parseable call", detail=f"alternative {i}: {e}") from None
    return gold


def official_tool_names(system: str) -> list | None:
    """The item's tool names as RoTBench's evaluate.py reads them, `json.loads(value[value.find("["):-13])` (its
    `get_config`), so that official scoring finds finish / ask_to_user by position; None if that fails."""
    try:
        config = json.loads(system[len(system[:system.find("[")]):-13])
    except (ValueError, RecursionError):
        return None
    if not isinstance(config, list):
        return None
    return [t["name"] if isinstance(t, dict) and isinstance(t.get("name"), str) else None for t in config]


def _openai_tool_calls(m: dict, call_ids: set | None = None) -> tuple[ToolCall, ...]:
    calls = []
    tool_calls = m.get("tool_calls") or []
    if not isinstance(tool_calls, list):
        raise ItemError("tool_calls is not a list")
    for tc in tool_calls:
        fn = tc.get("function", tc) if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ItemError("tool call without a function name")
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = loads(args, unique_keys=True) if args.strip() else {}
            except DuplicateKeyError as e:
                raise ItemError("duplicate key in call arguments", detail=f"{fn['name'][:60]!r}: {e}") from None
            except ValueError as e:
                raise ItemError(f"tool call {fn['name']!r} has non-JSON arguments"
                                + (" (nested too deeply)" if "deeply" in str(e) else "")) from None
        if not isinstance(args, dict):
            raise ItemError(f"tool call {fn['name']!r} arguments are not an object")
        if call_ids is not None and isinstance(tc.get("id"), str):
            call_ids.add(tc["id"])
        calls.append(ToolCall(fn["name"], args))
    return tuple(calls)


def _join_text_parts(content: Any) -> Any:
    """OpenAI content parts `[{"type": "text", "text": ...}, ...]` as one string; other content as is (a part that
    is not text, e.g. an image, stays a list, which `text_content` rejects)."""
    if isinstance(content, list) and content and all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return content


def load_openai(path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                report: LoadReport | None = None) -> Iterator[Conversation]:
    """OpenAI-style `{"messages": [...], "tools": [...]}` records (JSON list or JSONL).

    Assistant `tool_calls[].function.arguments` may be a JSON string or an object; role `tool` is the output.
    An assistant message with text and no tool calls is kept as text.
    """
    report = report or LoadReport("openai", str(path))

    def convert(where: str, item: Any):
        if not isinstance(item, dict) or not item.get("messages"):
            raise ItemError("empty conversation")
        tools = parse_tools(item.get("tools") or [])
        messages, call_ids = [], set()
        if not isinstance(item["messages"], list):
            raise ItemError("messages is not a list")
        for m in item["messages"]:
            role, content = _role_content(m, OPENAI_STYLE)
            content = text_content(_join_text_parts(content))
            calls = _openai_tool_calls(m, call_ids) if role == "assistant" else ()
            if role == "assistant" and not calls and not content.strip():
                raise ItemError("assistant turn without content or tool calls")
            if role == "tool" and m.get("tool_call_id") is not None and m["tool_call_id"] not in call_ids:
                raise ItemError("tool result for an unknown call id")
            messages.append(Message(role, content=content, calls=calls))  # text beside calls is kept, not trained
        check_turns(messages)
        cid = str(item.get("id") or stable_id(str(path), where))
        yield check_length(Conversation(cid, tools, tuple(messages), source="openai"), max_chars)

    yield from convert_items(read_json_or_jsonl(path, report, on_error), convert, report, on_error)


def load_toolbench_answer(path: str | Path, on_error: OnError = "skip", max_chars: int | None = None,
                          report: LoadReport | None = None) -> Iterator[Conversation]:
    """A ToolBench DFSDT answer file: the longest `answer_generation.train_messages` trajectory with its tools."""
    report = report or LoadReport("toolbench", str(path))

    def convert(where: str, item: Any):
        ag = item["answer_generation"]
        trajectories = ag.get("train_messages") or []
        if not trajectories:
            raise ItemError("no train_messages")
        traj = max(trajectories, key=len)
        tools = parse_tools(ag.get("function") or [])
        messages = []
        for m in traj:
            role, content = _role_content(m, TOOLBENCH_STYLE)
            if role == "system":
                continue
            if role == "assistant" and m.get("function_call"):
                calls = _openai_tool_calls({"tool_calls": [m["function_call"]]})
                messages.append(Message("assistant", content=text_content(content), calls=calls))
            else:
                messages.append(Message(role, content=text_content(content)))
        check_turns(messages)
        yield check_length(Conversation(Path(path).stem, tools, tuple(messages), source="toolbench"), max_chars)

    yield from convert_items([("file", read_json(path))], convert, report, on_error)
