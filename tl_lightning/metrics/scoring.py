"""Scoring modes for benchmark evaluation: a response → its parse and a `Classification` (category, TS/PI/CF).

  * `lenient`: our own reading, the taxonomy's lenient convention (docs/taxonomy.md): the whole output must parse
    as the call(s) in any syntax `parse_calls` reads, values compare after normalisation, the content of finish /
    ask-to-user tools is not compared. Works on every benchmark.
  * `official`: the benchmark's own scorer, reproduced item by item: RoTBench `evaluate.py`
    (`rotbench_official.py`) and BFCL's decoder and `ast_checker` for Python categories (`bfcl_decoder.py`,
    `bfcl_ast.py`). TS / PI / CF are the official script's (BFCL's verdict is CF; TS / PI follow from where its
    check failed); the error category says where the check failed. Available where the conversation carries what
    that scorer reads (the loaders keep the raw RoTBench gold strings and BFCL schemas in `benchmark_gold`).

`BenchmarkDataModule` hands each prompt's mode to the system in `PromptBatch.scoring`; `evaluation.predict` calls
`score_by_mode`. The lenient mode is the reward's own `rewards.reward.score_response`: one reading of a response.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tl_lightning.format.call_format import ParseFailure, ParseResult, parse_calls
from tl_lightning.format.schema import BfclGold, Conversation, RotbenchGold, ToolCall
from tl_lightning.format.tools import FREE_TEXT_TOOLS
from tl_lightning.metrics.bfcl_ast import Verdict, check
from tl_lightning.metrics.bfcl_decoder import DecodeError, as_bfcl_answer, decode_ast, is_empty_output
from tl_lightning.metrics.rotbench_official import OfficialResult, as_rotbench_answer, score_official
from tl_lightning.rewards.reward import score_response
from tl_lightning.rewards.taxonomy import CATEGORIES, Classification, GoldCall, ScoringMode, golds_for

SCORING_MODES: tuple[str, ...] = ("official", "lenient")
OFFICIAL_SCORERS = {"rotbench": "RoTBench evaluate.py", "bfcl": "BFCL ast_checker"}


def official_scorer(conv: Conversation) -> str | None:
    """The official scorer that can score `conv` ("rotbench" / "bfcl"), or None."""
    official = conv.benchmark_gold
    if isinstance(official, RotbenchGold):
        return "rotbench"
    if isinstance(official, BfclGold) and (official.possible_answer is not None or conv.gold == ((),)):
        return "bfcl"
    return None


def scoring_label(mode: ScoringMode, conv: Conversation) -> str:
    """What produced the numbers, as the summary shows it: "official (RoTBench evaluate.py)" or "lenient"."""
    scorer = official_scorer(conv) if mode == "official" else None
    return f"official ({OFFICIAL_SCORERS[scorer]})" if scorer else "lenient"


def score_by_mode(text: str, conv: Conversation, mode: ScoringMode = "lenient",
                  free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> tuple[ParseResult, Classification]:
    """Parse and classify a response under a scoring mode; `official` falls back to `lenient` (the reward's
    reading, `rewards.reward.score_response`) where the conversation has no official scorer (the summary's label
    says which applied)."""
    scorer = official_scorer(conv) if mode == "official" else None
    if scorer == "rotbench":
        return _rotbench(text, conv)
    if scorer == "bfcl":
        return _bfcl(text, conv)
    return score_response(text, conv, "lenient", free_text_tools)


# ---------------------------------------------------------------------------------------------------- RoTBench
def _rotbench(text: str, conv: Conversation) -> tuple[ParseResult, Classification]:
    official = conv.benchmark_gold
    result = score_official(as_rotbench_answer(text), list(official.answers),
                            None if official.tool_names is None else list(official.tool_names))
    scores = {"ts": float(result.ts), "pi": float(result.pi), "cf": float(result.cf)}
    call = ToolCall(result.action, result.arguments) if isinstance(result.arguments, dict) and result.action else None
    gold = _gold_for_action(conv, result.action) if call else None
    category = _rotbench_category(result, call, gold, text, conv)
    pairs = ((call, gold),) if call and gold else ()
    return parse_calls(text), Classification(category, (call,) if call else (), None, result.note, pairs, scores)


def _gold_for_action(conv: Conversation, action: str) -> GoldCall | None:
    """The first gold alternative calling `action` (or the finish tool, for a prediction naming `finish`)."""
    names = conv.benchmark_gold.tool_names or [None]
    for answer in golds_for(conv):
        if len(answer) == 1 and (answer[0].name == action or action == "finish" and answer[0].name == names[-1]):
            return answer[0]
    return None


def _rotbench_category(result: OfficialResult, call: ToolCall | None, gold: GoldCall | None, text: str,
                       conv: Conversation) -> str:
    if result.cf:
        return "correct"
    if result.pi:
        return "content_filling"
    if not text.strip():
        return "no_call"
    if call is None or not call.arguments:  # no non-empty JSON object: the script skips (or raises on) the item
        return "format_error"
    if result.ts and gold is not None:
        return _param_flags(call, gold, conv)
    offered = {n for n in conv.benchmark_gold.tool_names or () if n} | set(conv.tool_names)
    return "wrong_tool" if call.name in offered or call.name == "finish" else "tool_hallucination"


def _param_flags(call: ToolCall, gold: GoldCall, conv: Conversation) -> str:
    """The params_* category of a right tool with the wrong key set (H: undeclared, R: not in gold, M: missing)."""
    spec = conv.tool(gold.name)
    declared = set(spec.param_names if spec else ()) | set(gold.values)
    keys, gold_keys = set(call.arguments), set(gold.values)
    flags = [name for flag, name in ((keys - declared, "hallucinated"), ((keys & declared) - gold_keys, "redundant"),
                                     (gold_keys - keys, "missing")) if flag]
    return "params_" + "_".join(flags) if flags else "content_filling"


# -------------------------------------------------------------------------------------------------------- BFCL
def _bfcl(text: str, conv: Conversation) -> tuple[ParseResult, Classification]:
    irrelevance = conv.gold == ((),)
    try:
        decoded = decode_ast(as_bfcl_answer(text))
    except DecodeError as e:
        failure = ParseFailure("empty" if not text.strip() else "syntax", f"BFCL decoder fails: {e}")
        if irrelevance:
            return ParseResult(failure=failure), Classification("correct", (), 0, "no call expected, none made")
        return ParseResult(failure=failure), Classification("no_call" if failure.kind == "empty" else "format_error",
                                                            reason=failure.reason)
    calls = tuple(ToolCall(str(name), _jsonable(args)) for d in decoded for name, args in d.items())
    parsed = ParseResult(calls=calls)
    if irrelevance:
        ok = is_empty_output(decoded)
        return parsed, Classification("correct" if ok else "wrong_count", calls, 0,
                                      "" if ok else "a call where none was expected")
    official = conv.benchmark_gold
    verdict = check(list(official.functions), decoded, list(official.possible_answer), official.category)
    category = "correct" if verdict.valid else _bfcl_category(verdict, calls, conv)
    pairs = _pairs(calls, conv) if category != "wrong_count" else ()
    return parsed, Classification(category, calls, 0, verdict.error_type, pairs)


def _bfcl_category(verdict: Verdict, calls: tuple[ToolCall, ...], conv: Conversation) -> str:
    kind = verdict.error_type
    if kind.endswith(":wrong_count"):
        return "wrong_count"
    if kind.endswith(":wrong_func_name") or _called_names(calls) != _gold_names(conv):
        # TS needs the gold tools: a parallel cannot_find_match may last have tried a right-name call with a
        # wrong value, which must not hide an invented or wrong tool elsewhere in the output
        return "wrong_tool" if all(c.name in conv.tool_names for c in calls) else "tool_hallucination"
    if kind.endswith(":cannot_find_match"):
        attempts = [_bfcl_category(a, calls, conv) for a in verdict.attempts] or ["wrong_tool"]
        return min(attempts, key=CATEGORIES.index)
    if kind.endswith(("missing_required", "missing_optional")):
        return "params_missing"
    if kind.endswith("unexpected_param"):
        declared = any(verdict.param in t.param_names for t in conv.tools)
        return "params_redundant" if declared else "params_hallucinated"
    return "content_filling"  # type_error:*, value_error:*, *_checker:unclear, checker_raises


def _called_names(calls: tuple[ToolCall, ...]) -> Counter:
    return Counter(c.name for c in calls)


def _gold_names(conv: Conversation) -> Counter:
    """The tools BFCL's checker matches the output against: every gold call's for parallel items, the first
    gold call's otherwise (`multiple` checks only the first)."""
    answer = conv.benchmark_gold.possible_answer
    checked = answer if "parallel" in conv.benchmark_gold.category else answer[:1]
    return Counter(next(iter(entry)) for entry in checked)


def _pairs(calls: tuple[ToolCall, ...], conv: Conversation) -> tuple:
    golds = golds_for(conv)
    return tuple(zip(calls, golds[0])) if golds and len(golds[0]) == len(calls) else ()


def _jsonable(value: Any) -> Any:
    """Decoded values for the predictions record: tuples as lists, other non-JSON constants as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
