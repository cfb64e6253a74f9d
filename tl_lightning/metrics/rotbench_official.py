"""RoTBench's official TS / PI / CF, item by item: `Code/Evaluation/evaluate.py` of Junjie-Ye/RoTBench (version 0,
ordinary models), quirks included. `tests/metrics/test_rotbench_official.py` runs that script itself (read from
../shared/data) on thousands of perturbed predictions and requires 100% item-level agreement.

The script reads a prediction string at fixed offsets and compares it with each gold alternative string:

  action = text[text.find("Action:") + 8 : text.find("Action Input:")], one trailing "\\n" removed
  input  = json.loads(text[text.find("Action Input:") + 14 :])

Quirks, all reproduced (README "Evaluate" lists them):
  1. Fixed offsets: "Action:x" loses the x; "Action:  x" keeps a space; a missing marker makes `find` return -1,
     so the slice starts at character 7 or 13; "x \\n" and "x\\n\\n" are not "x".
  2. Any text after the JSON object ("\\nObservation: ...") fails `json.loads`; trailing whitespace and blank
     lines are fine. JSON only: a Python dict literal fails.
  3. A falsy input (`{}`, `[]`, `0`, `null`, `false`) or a JSON string fails all three metrics, so items whose
     gold arguments are `{}` can never score.
  4. TS: a prediction naming `finish` matches a gold that names the *last* tool of the item's list (finish's
     position, whatever name noise gave it); the renaming then persists for later alternatives.
  5. PI: key sets equal; gold keys whose value is "None" must be present.
  6. CF: "None"-valued gold keys are deleted from both sides, and the deletion persists in the prediction for later
     alternatives; values compare with Python `==` (1 == 1.0 == true, "1" != 1, case-sensitive); the content of
     the last two tools (by position) and of golds literally named `finish` / `ask_to_user` is not compared.
  7. Inputs that make the script raise: an empty action (`action[-1]`, IndexError), JSON nested too deeply or an
     integer too long to convert (json raises), a list / number / `true` input whose action matches (`.keys()`,
     AttributeError in PI). The script would stop; we never raise and keep what it had counted for the item
     before the exception (TS for a matching list input, nothing for the others).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tl_lightning.format.call_format import parse_calls

ACTION, ACTION_INPUT = "Action:", "Action Input:"


@dataclass(frozen=True)
class OfficialResult:
    """One item's official TS / PI / CF, with what the script read and why it stopped short."""

    ts: bool
    pi: bool
    cf: bool
    action: str | None = None
    arguments: Any = None
    note: str = ""
    """Why the input failed all three, or the exception the script would have raised (we contain it)."""


class _ScriptRaises(Exception):
    """The official script raises here; the metrics it counted before stay counted."""


def as_rotbench_answer(text: str) -> str:
    """The prediction string the official script reads. Output containing "Action:" (ReAct, RoTBench's own format)
    is scored verbatim. Output in another call syntax (the paper's `name(k='v')`) is first written the way RoTBench
    writes its golds, one `Thought:\\nAction: name\\nAction Input: {json}` block per call; unparseable output is
    scored verbatim (and fails)."""
    if ACTION in text:
        return text
    parsed = parse_calls(text)
    if not parsed.ok or not parsed.calls:
        return text
    return "\n".join(f"Thought:\n{ACTION} {c.name}\n{ACTION_INPUT} {json.dumps(c.arguments, ensure_ascii=False)}"
                     for c in parsed.calls)


def _action(text: str) -> str:
    action = text[text.find(ACTION) + 8: text.find(ACTION_INPUT)]
    if not action:
        raise _ScriptRaises("empty action: the script's action[-1] raises IndexError")
    return action[:-1] if action[-1] == "\n" else action


def _json_after_input(text: str, gold: bool) -> Any:
    try:
        return json.loads(text[text.find(ACTION_INPUT) + 14:])
    except json.JSONDecodeError:
        if gold:  # the script does not catch errors in gold strings
            raise _ScriptRaises("gold Action Input is not JSON") from None
        return 0
    except (RecursionError, ValueError) as e:  # nesting / integer-size limits: json raises, the script stops
        raise _ScriptRaises(f"json raises {type(e).__name__}") from None


def _prediction_input(text: str) -> Any:
    value = _json_after_input(text, gold=False)
    return 0 if isinstance(value, str) else value


def _name(tool_names: Sequence[str | None] | None, index: int) -> str:
    """`config[index]["name"]`: raises where the script's lookup would."""
    if tool_names is None or len(tool_names) < -index or tool_names[index] is None:
        raise _ScriptRaises(f"the tool list has no usable entry at {index}")
    return tool_names[index]


def _keys(value: Any, side: str) -> set:
    if not isinstance(value, dict):
        raise _ScriptRaises(f"{side} Action Input is a {type(value).__name__}: .keys() raises AttributeError")
    return set(value)


def _tool_selection(action: str, answers: Sequence[str], names) -> bool:
    for answer in answers:
        gold_action = _action(answer)
        if gold_action == _name(names, -1) and action == "finish":
            action = gold_action
        if gold_action == action:
            return True
    return False


def _parameter_identification(action: str, arguments: Any, answers: Sequence[str], names) -> bool:
    for answer in answers:
        gold_action = _action(answer)
        gold_arguments = _json_after_input(answer, gold=True)
        if gold_action == _name(names, -1) and action == "finish":
            action = gold_action
        if gold_action != action:
            continue
        if _keys(gold_arguments, "gold") == _keys(arguments, "predicted"):
            return True
    return False


def _content_filling(action: str, arguments: Any, answers: Sequence[str], names) -> bool:
    arguments = dict(arguments) if isinstance(arguments, dict) else arguments  # mutated across alternatives
    for answer in answers:
        gold_action = _action(answer)
        gold_arguments = _json_after_input(answer, gold=True)
        if gold_action == _name(names, -1) and action == "finish":
            action = gold_action
        if gold_action != action or _keys(gold_arguments, "gold") != _keys(arguments, "predicted"):
            continue
        role = "finish" if gold_action == _name(names, -1) else gold_action
        role = "ask_to_user" if role == _name(names, -2) else role
        for key in [k for k, v in gold_arguments.items() if v == "None"]:
            del gold_arguments[key], arguments[key]
        if gold_arguments == arguments or role in ("finish", "ask_to_user"):
            return True
    return False


def score_official(answer: str, gold_answers: Sequence[str] | str, tool_names: Sequence[str | None] | None
                   ) -> OfficialResult:
    """Official TS / PI / CF of one prediction string (see `as_rotbench_answer`).

    Args:
        answer: the prediction string, as the script reads `conversations[-1]["value"]` of a test item.
        gold_answers: the item's raw gold value (a list of `Thought/Action/Action Input` strings).
        tool_names: the names of the item's tool list as the script parses it from the system prompt
            (None: the script cannot parse it).
    """
    counted: list[bool] = []
    action, arguments = None, None
    try:
        if tool_names is None:
            raise _ScriptRaises("the system prompt's tool list does not parse")
        action, arguments = _action(answer), _prediction_input(answer)
        if not arguments:
            return OfficialResult(False, False, False, action, arguments,
                                  "Action Input is not a non-empty JSON object (the script skips the item)")
        counted.append(_tool_selection(action, gold_answers, tool_names))
        counted.append(_parameter_identification(action, arguments, gold_answers, tool_names))
        counted.append(_content_filling(action, arguments, gold_answers, tool_names))
        note = ""
    except _ScriptRaises as e:
        note = f"the official script raises here ({e}); kept what it had counted"
    ts, pi, cf = (counted + [False] * 3)[:3]
    return OfficialResult(ts, pi, cf, action, arguments, note)
