"""ToolWorld: seeded procedural tool-use conversations with realistic error feedback.

A conversation: the user asks for one task (sometimes two chained tasks: search, then act on the first result);
the assistant calls tools, a small executor answers each call, and the assistant finishes with `finish(answer=...)`.
With probability `error_rate` per call (default 0.17, the share of erroneous calls the paper measured in
RoTLLaMA's data) an erroneous attempt comes first. The executor then checks it against the signature and answers the
way Python or an API would: "NameError: name 'x' is not defined", "TypeError: f() missing 1 required positional
argument: 'query'", "got an unexpected keyword argument", or `{"error": "invalid value ..."}`. The corrected call
follows.

Everything depends only on (seed, split, index): splits are deterministic and disjoint by construction.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from tl_lightning.data.toolworld.catalog import (
    ASK_TO_USER,
    CHAINS,
    FINISH,
    TOOLS,
    TOOLS_BY_NAME,
    VALUE_TYPES,
    ToolDef,
    draw_value,
)
from tl_lightning.format.schema import Conversation, Message, ToolCall

ERROR_KINDS = ("tool_hallucination", "wrong_tool", "missing_parameter", "unexpected_parameter", "bad_value")
FOLLOW_PHRASES = {
    "get_paper_details": " Then show me the details of the first one.",
    "get_paper_citations": " Then list who cites the first one.",
    "book_flight": " Then book the first one for {passenger_name}.",
    "book_hotel": " Then book the first one for {guest_name}, {nights} nights.",
    "search_hotel_reviews": " Then show me reviews of the first one.",
    "get_song_lyrics": " Then show me its lyrics.",
    "create_event_reminder": " And remind me {minutes_before} minutes before it.",
}
_KEY_SYNONYMS = {"query": "keyword", "city": "location", "date": "day", "limit": "max_results", "title": "name",
                 "symbol": "ticker", "text": "content", "origin": "from_city", "destination": "to_city",
                 "to": "recipient"}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------------------------------- executor
def execute(call: ToolCall, available: dict[str, ToolDef], rng: random.Random) -> tuple[str, bool]:
    """Run `call` against the available tools' signatures: (output text, is_error). Deterministic given `rng`."""
    tool = available.get(call.name)
    if tool is None:
        return f"NameError: name '{call.name}' is not defined", True
    names = {p.name for p in tool.params}
    for key in call.arguments:
        if key not in names:
            return f"TypeError: {call.name}() got an unexpected keyword argument '{key}'", True
    missing = [p.name for p in tool.params if p.required and p.name not in call.arguments]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        listed = " and ".join(f"'{m}'" for m in missing)
        return f"TypeError: {call.name}() missing {len(missing)} required positional argument{plural}: {listed}", True
    for p in tool.params:
        if p.name in call.arguments and (problem := _invalid(p.kind, call.arguments[p.name])):
            return json.dumps({"error": f"invalid value for '{p.name}': {problem}"}), True
    return json.dumps(_success(tool, call, rng), ensure_ascii=False), False


def _invalid(kind: str, value) -> str:
    expected = VALUE_TYPES.get(kind, "str")
    if expected == "int" and (not isinstance(value, int) or isinstance(value, bool)):
        return f"expected an integer, got {value!r}"
    if expected == "float" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        return f"expected a number, got {value!r}"
    if expected == "bool" and not isinstance(value, bool):
        return f"expected true or false, got {value!r}"
    if expected == "str" and (not isinstance(value, str) or not value.strip()):
        return "must be a non-empty string"
    if kind == "date" and not _DATE.match(str(value)):
        return f"{value!r} is not a date in YYYY-MM-DD format"
    return ""


def _success(tool: ToolDef, call: ToolCall, rng: random.Random) -> dict:
    if tool.returns:
        return {"results": [{"id": draw_value(tool.returns, rng), "score": round(rng.random(), 2)}
                            for _ in range(rng.randint(2, 3))]}
    first = next(iter(call.arguments.values()), "")
    return {"status": "ok", "result": f"{tool.description.rstrip('.').lower()} for {first}",
            "ref": f"R{rng.randint(1000, 9999)}"}


# ---------------------------------------------------------------------------------------------- conversations
@dataclass(frozen=True)
class ToolWorld:
    """Seeded generator of ToolWorld splits.

    Args:
        seed: base seed; a conversation depends only on (seed, split, index).
        error_rate: probability that a call is preceded by an erroneous attempt (paper: 17% of calls).
        chain_rate: probability of a two-step (search, then act on the first result) task.
        distractors: (min, max) number of unrelated tools added to the candidate list.
        error_kinds: which erroneous-call kinds to inject (uniformly).
    """

    seed: int = 0
    error_rate: float = 0.17
    chain_rate: float = 0.4
    distractors: tuple[int, int] = (2, 5)
    error_kinds: tuple[str, ...] = ERROR_KINDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")
        unknown = set(self.error_kinds) - set(ERROR_KINDS)
        if unknown:
            raise ValueError(f"unknown error kinds {sorted(unknown)}; choose from {ERROR_KINDS}")

    def split(self, name: str, size: int) -> list[Conversation]:
        return [self.conversation(name, i) for i in range(size)]

    def conversation(self, split: str, index: int) -> Conversation:
        rng = random.Random(f"toolworld/{self.seed}/{split}/{index}")
        primary = rng.choice(TOOLS)
        chained = primary.name in CHAINS and rng.random() < self.chain_rate
        follow = TOOLS_BY_NAME[rng.choice(CHAINS[primary.name])] if chained else None
        tools = self._candidates(primary, follow, rng)
        available = {t.name: t for t in tools}
        call, request = _request(primary, rng)
        messages: list[Message] = [Message("user", request)]
        errors: list[dict] = []
        output = self._step(call, available, messages, errors, rng)
        if follow is not None:
            follow_call, phrase = _follow_up(follow, output, rng)
            messages[0] = Message("user", request + phrase)
            output = self._step(follow_call, available, messages, errors, rng)
        answer = f"Done. Result: {_summary(output)}"
        messages.append(Message("assistant", calls=(ToolCall("finish", {"answer": answer}),)))
        meta = {"split": split, "index": index, "errors": errors}
        return Conversation(f"toolworld-{self.seed}-{split}-{index}", tuple(t.spec() for t in tools), tuple(messages),
                            None, "toolworld", meta)

    def _candidates(self, primary: ToolDef, follow: ToolDef | None, rng: random.Random) -> list[ToolDef]:
        prefix = "_".join(primary.name.split("_")[:2])
        related = [t for t in TOOLS if t.name.startswith(prefix) or t is follow or t is primary]
        others = [t for t in TOOLS if t not in related]
        chosen = related + rng.sample(others, rng.randint(*self.distractors))
        rng.shuffle(chosen)
        return chosen + [ASK_TO_USER, FINISH]

    def _step(self, call: ToolCall, available: dict, messages: list[Message], errors: list[dict],
              rng: random.Random) -> str:
        if rng.random() < self.error_rate:
            for _ in range(8):  # a kind may not apply (no sibling tool) or succeed by chance: draw again
                bad = _erroneous(call, available, rng, self.error_kinds)
                if bad is None:
                    continue
                output, is_error = execute(bad[1], available, rng)
                if is_error:  # only keep attempts whose feedback really is an error
                    errors.append({"message_index": len(messages), "kind": bad[0]})
                    messages += [Message("assistant", calls=(bad[1],)), Message("tool", output)]
                    break
        output, is_error = execute(call, available, rng)
        assert not is_error, f"ToolWorld produced an invalid gold call: {call} → {output}"
        messages += [Message("assistant", calls=(call,)), Message("tool", output)]
        return output


def _fmt(value) -> str:
    return ("yes" if value else "no") if isinstance(value, bool) else f"{value:g}" if isinstance(value,
                                                                                                 float) else str(value)


def _request(tool: ToolDef, rng: random.Random) -> tuple[ToolCall, str]:
    args = {p.name: draw_value(p.kind, rng) for p in tool.params if p.required}
    if "origin" in args and args.get("destination") == args["origin"]:
        args["destination"] = next(c for c in ("Oslo", "Lima") if c != args["origin"])
    text = rng.choice(tool.templates)
    for p in tool.params:
        if not p.required and rng.random() < 0.4:
            args[p.name] = draw_value(p.kind, rng)
            text += tool.optional_phrases[p.name]
    ordered = {p.name: args[p.name] for p in tool.params if p.name in args}
    return ToolCall(tool.name, ordered), text.format(**{k: _fmt(v) for k, v in ordered.items()})


def _follow_up(tool: ToolDef, previous_output: str, rng: random.Random) -> tuple[ToolCall, str]:
    first_id = json.loads(previous_output)["results"][0]["id"]
    args = {}
    for p in tool.params:
        if p.required:
            args[p.name] = first_id if p.kind.endswith("_id") else draw_value(p.kind, rng)
    phrase = FOLLOW_PHRASES[tool.name].format(**{k: _fmt(v) for k, v in args.items()})
    return ToolCall(tool.name, args), phrase


def _summary(output: str) -> str:
    data = json.loads(output)
    if "results" in data:
        return ", ".join(r["id"] for r in data["results"])
    return f"{data['result']} (ref {data['ref']})"


def _erroneous(call: ToolCall, available: dict[str, ToolDef], rng: random.Random,
               kinds: tuple[str, ...]) -> tuple[str, ToolCall] | None:
    kind = rng.choice(kinds)
    args = dict(call.arguments)
    tool = available[call.name]
    if kind == "tool_hallucination":
        return kind, ToolCall(_hallucinated_name(call.name, available, rng), args)
    if kind == "wrong_tool":
        prefix = call.name.split("_")[0]
        siblings = [n for n in available if n != call.name and n.startswith(prefix) and n not in ("finish",
                                                                                                  "ask_to_user")]
        return (kind, ToolCall(rng.choice(siblings), args)) if siblings else None
    if kind == "missing_parameter":
        required = [p.name for p in tool.params if p.required]
        if not required:
            return None
        args.pop(rng.choice(required))
        return kind, ToolCall(call.name, args)
    if kind == "unexpected_parameter":
        key = rng.choice(list(args))
        new_key = _KEY_SYNONYMS.get(key, key + "_value")
        return kind, ToolCall(call.name, {(new_key if k == key else k): v for k, v in args.items()})
    key = rng.choice(list(args))  # bad_value
    value = args[key]
    args[key] = (str(value) if not isinstance(value, str) else
                 "-".join(reversed(value.split("-"))) if _DATE.match(value) else "")
    return kind, ToolCall(call.name, args)


def _hallucinated_name(name: str, available: dict, rng: random.Random) -> str:
    parts = name.split("_")
    options = [name.rstrip("s") if name.endswith("s") else name + "s",
               "_".join(["fetch" if p == "get" else "find" if p == "search" else p for p in parts]),
               parts[0] + "".join(p.title() for p in parts[1:]), "_".join(parts[:-1]) or name + "_info"]
    options = [o for o in options if o not in available and o != name]
    return rng.choice(options) if options else name + "_v2"
