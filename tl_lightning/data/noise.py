"""RoTBench-style noise for any canonical conversation: rename tools and parameters (docs/data.md §2.3).

Levels, as RoTBench builds its five environments:

- ``slight``: typos in up to ~1/3 of each name's characters (insert, delete or substitute a letter);
- ``medium``: each name becomes a random 1-10-letter string or its own reversal;
- ``heavy``: tool names are shuffled among the offered tools (``finish`` and ``ask_to_user`` included, so a name
  points to another tool's description); per tool, the parameter names are shuffled, or a new required parameter
  is added whose description says which value to set;
- ``union``: one of slight/medium/heavy for the tools and one for the parameters.

The renaming is applied consistently to the tool list, every assistant call (gold and history), and the names that
tool feedback quotes (``get_x() missing ... 'query'``), so a noisy conversation is the clean one in another
vocabulary. ``meta["noise"]`` records the maps; ``Conversation.free_text_tools`` names the tools that now play the
``finish`` / ``ask_to_user`` roles, whose free-text arguments the scorer does not compare.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import replace
from typing import Literal

from tl_lightning.format.schema import Conversation, ToolCall, ToolParam, ToolSpec
from tl_lightning.format.tools import free_text_tools_of

NoiseLevel = Literal["clean", "slight", "medium", "heavy", "union"]
NOISE_LEVELS: tuple[str, ...] = ("clean", "slight", "medium", "heavy", "union")
ADDED_PARAM_DESCRIPTION = 'Whenever you use this parameter, please set it as "{value}".'


def add_noise(conv: Conversation, level: NoiseLevel, seed: int = 0) -> Conversation:
    """`conv` with tools and parameters renamed at `level` (deterministic in (seed, conv.id, level))."""
    if level not in NOISE_LEVELS:
        raise ValueError(f"unknown noise level {level!r}; choose from {NOISE_LEVELS}")
    if level == "clean":
        return conv
    rng = random.Random(f"noise/{seed}/{level}/{conv.id}")
    tool_level, param_level = (rng.choice(NOISE_LEVELS[1:4]), rng.choice(NOISE_LEVELS[1:4])) if level == "union" \
        else (level, level)
    tool_map = _rename_tools([t.name for t in conv.tools], tool_level, rng)
    param_maps, added = {}, {}
    for t in conv.tools:
        param_maps[t.name], extra = _rename_params([p.name for p in t.params], param_level, rng)
        if extra:
            added[t.name] = extra
    tools = tuple(_noisy_spec(t, tool_map, param_maps[t.name], added.get(t.name)) for t in conv.tools)

    def call(c: ToolCall) -> ToolCall:
        pmap = param_maps.get(c.name, {})
        args = {pmap.get(k, k): v for k, v in c.arguments.items()}
        if c.name in added:
            args[added[c.name][0]] = added[c.name][1]
        return ToolCall(tool_map.get(c.name, c.name), args)

    messages, last_calls = [], ()
    for m in conv.messages:
        if m.calls:
            last_calls = m.calls
            m = replace(m, calls=tuple(call(c) for c in m.calls))
        elif m.role == "tool":
            m = replace(m, content=_rename_in_feedback(m.content, last_calls, tool_map, param_maps))
        messages.append(m)
    gold = None if conv.gold is None else tuple(tuple(call(c) for c in answer) for answer in conv.gold)
    free = sorted(tool_map.get(n, n) for n in free_text_tools_of(conv) if n in tool_map)
    meta = {**conv.meta, "noise": {"level": level, "tool_level": tool_level, "param_level": param_level,
                                   "tools": tool_map, "params": {k: v for k, v in param_maps.items() if v},
                                   "added": added}}
    # benchmark_gold is dropped: the raw benchmark golds and schemas name the old tools; the renamed `gold` rules
    # (scored leniently)
    return Conversation(f"{conv.id}~{level}", tools, tuple(messages), gold, conv.source, meta, tuple(free))


def _noisy_spec(t: ToolSpec, tool_map: dict, pmap: dict, extra: tuple[str, str] | None) -> ToolSpec:
    params = tuple(replace(p, name=pmap.get(p.name, p.name)) for p in t.params)
    if extra:
        params += (ToolParam(extra[0], "string", ADDED_PARAM_DESCRIPTION.format(value=extra[1]), True),)
    return replace(t, name=tool_map[t.name], params=params)


def _rename_tools(names: list[str], level: str, rng: random.Random) -> dict[str, str]:
    if level == "heavy":
        shuffled = names[:]
        rng.shuffle(shuffled)
        return dict(zip(names, shuffled))
    return _unique_renames(names, level, rng)


def _rename_params(names: list[str], level: str, rng: random.Random) -> tuple[dict[str, str], tuple[str, str] | None]:
    if level != "heavy":
        return _unique_renames(names, level, rng), None
    if len(names) >= 2 and rng.random() < 0.5:
        shuffled = names[:]
        while shuffled == names:
            rng.shuffle(shuffled)
        return dict(zip(names, shuffled)), None
    taken = set(names)
    new = _fresh(lambda: _random_word(rng), taken)
    return {}, (new, _random_word(rng, 4, 8))


def _unique_renames(names: list[str], level: str, rng: random.Random) -> dict[str, str]:
    """Rename every name with `level`'s edit; names stay distinct from each other."""
    edit = _typo if level == "slight" else _scramble
    out: dict[str, str] = {}
    for n in names:
        out[n] = _fresh(lambda: edit(n, rng), set(out.values()) | set(names))
    return out


def _fresh(make, taken: set[str], tries: int = 50) -> str:
    for _ in range(tries):
        name = make()
        if name not in taken and name.isidentifier():
            return name
    raise RuntimeError("could not draw a fresh name")  # unreachable in practice: 52^k choices


def _typo(name: str, rng: random.Random) -> str:
    chars = list(name)
    for _ in range(rng.randint(1, max(1, len(name) // 3))):
        op, i = rng.choice(("insert", "delete", "substitute")), rng.randrange(len(chars))
        if op == "insert":
            chars.insert(i, rng.choice(string.ascii_lowercase))
        elif op == "delete" and len(chars) > 1:
            del chars[i]
        else:
            chars[i] = rng.choice(string.ascii_lowercase)
    return "".join(chars)


def _scramble(name: str, rng: random.Random) -> str:
    return name[::-1] if rng.random() < 0.5 else _random_word(rng)


def _random_word(rng: random.Random, lo: int = 1, hi: int = 10) -> str:
    return "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(lo, hi)))


def _rename_in_feedback(text: str, calls: tuple[ToolCall, ...], tool_map: dict, param_maps: dict) -> str:
    """Rename what a tool's feedback quotes of the call it answers, `name(` and `'param'`, in one pass (a shuffle
    maps a → b and b → a)."""
    for c in calls:
        pmap = param_maps.get(c.name, {})
        names = {f"{c.name}(": f"{tool_map[c.name]}("} if c.name in tool_map else {}
        names.update({f"'{old}'": f"'{new}'" for old, new in pmap.items()})
        if names:
            pattern = "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True))
            text = re.sub(rf"(?<!\w)(?:{pattern})", lambda m: names[m.group(0)], text)
    return text
