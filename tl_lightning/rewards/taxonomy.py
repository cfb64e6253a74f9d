"""The tool-call error taxonomy: `classify(prediction, gold, tools)`, the single source of truth for "what is wrong
with this call". The IRM reward (`reward.py`), the metrics (`metrics/tool_call.py`) and evaluation all call it.

Rules, first match wins (paper code `test_answer_for_reward`, generalised; paper.md §5.2):
  1. `format_error`   the output does not parse as tool call(s) (`call_format.parse_calls` failure). An empty
                      output is `no_call` instead. Where a gold answer is "no call" (BFCL irrelevance), an
                      empty or non-call output is `correct`.
  2. `wrong_count`    the number of calls differs from every gold answer's (parallel / multiple calls).
  3. `tool_hallucination`  a predicted tool name is not among the offered tools.
  4. `wrong_tool`     an offered tool, but not the gold one.
  5. parameter identification, with flags H (a predicted key the tool does not declare), R (a declared key the
     gold call does not use) and M (a gold key the prediction lacks; keys the gold marks optional may be
     omitted). Each non-empty combination is its own category: `params_hallucinated`, `params_redundant`,
     `params_missing`, `params_hallucinated_redundant`, `params_hallucinated_missing`, `params_redundant_missing`,
     `params_hallucinated_redundant_missing` (rewards as the paper code: H -0.8, R or M -0.5, H with R or M -1.3,
     R and M -1.0, all three -1.8).
  6. `content_filling`  right keys, a value differs after normalisation (see `values_equal`).
  7. `correct`.
Several calls are matched to the gold calls order-insensitively (the assignment with the best category), and the
worst matched pair decides. Several acceptable gold answers (RoTBench, BFCL): the best-scoring one is taken.

Conventions (`convention=`, docs/taxonomy.md):
  * `lenient` (metrics and evaluation): the whole output must parse as the call(s); values compare after
    normalisation (case, whitespace, surrounding quotes, numeric strings as numbers); the free text of finish /
    ask-to-user style tools is not compared (RoTBench's rule).
  * `paper` (the IRM reward's default): as the reference code's reward, only the first call of the output is read
    (what follows it is ignored) and compared with the first gold call; only string-valued arguments are read, on
    both sides (the reference parses `key='string'` pairs only: `limit=2` and its key take part in no check), and
    they must be equal exactly; free-text tools are compared like any other. docs/taxonomy.md lists what still
    differs from the reference code.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tl_lightning.format.call_format import ParseResult, parse_calls
from tl_lightning.format.first_call import parse_first_call
from tl_lightning.format.schema import BfclGold, ToolCall, ToolSpec
from tl_lightning.format.tools import FREE_TEXT_TOOLS

CATEGORIES: tuple[str, ...] = (
    "correct", "content_filling", "params_redundant", "params_missing", "params_hallucinated",
    "params_redundant_missing", "params_hallucinated_redundant", "params_hallucinated_missing",
    "params_hallucinated_redundant_missing", "wrong_tool", "wrong_count", "tool_hallucination", "no_call",
    "format_error")
"""All categories, best first: the order is the severity used to pick the best gold answer / worst call pair."""
_RANK = {c: i for i, c in enumerate(CATEGORIES)}
PARAM_CATEGORIES = tuple(c for c in CATEGORIES if c.startswith("params_"))
RIGHT_TOOL = frozenset(("correct", "content_filling") + PARAM_CATEGORIES)
RIGHT_PARAMS = frozenset(("correct", "content_filling"))


@dataclass(frozen=True)
class GoldCall:
    """A gold call with per-argument acceptable values.

    Attributes:
        name: the tool.
        values: key → acceptable values (any one matches).
        optional: keys that may be omitted (BFCL `""` alternatives).
        any_value: keys that must be present but whose value is not compared (RoTBench gold value "None").
    """

    name: str
    values: dict[str, list[Any]]
    optional: frozenset[str] = frozenset()
    any_value: frozenset[str] = frozenset()

    @classmethod
    def from_call(cls, call: ToolCall) -> "GoldCall":
        """From a plain gold call; a RoTBench value "None" means "present, value not given"."""
        any_value = frozenset(k for k, v in call.arguments.items() if v == "None")
        return cls(call.name, {k: [v] for k, v in call.arguments.items()}, frozenset(), any_value)

    @classmethod
    def from_bfcl(cls, entry: dict) -> "GoldCall":
        """From one BFCL possible-answer entry `{"name": {"param": [alternatives]}}` ("" = may be omitted)."""
        (name, params), = entry.items()
        values = {k: [_per_key(a) for a in alts if a != ""] for k, alts in params.items()}
        # "" = may be omitted; an empty alternatives list (some live_* items) admits no value, so only omission fits
        optional = frozenset(k for k, alts in params.items() if "" in alts or not alts)
        return cls(name, values, optional)


GoldAnswer = tuple[GoldCall, ...]
Convention = Literal["lenient", "paper"]
"""How the taxonomy reads a response (module docstring): the reward's option (`PPOSystem.reward_convention`)."""
CONVENTIONS: tuple[str, ...] = ("lenient", "paper")
ScoringMode = Literal["official", "lenient"]
"""How a benchmark's numbers are produced (`BenchmarkSource.scoring`): "official" replaces the taxonomy with the
benchmark's own scorer where one is reproduced (`metrics/scoring.py`), "lenient" is the taxonomy's lenient reading.
A separate option from `Convention`: it picks *whose* rules judge (ours or the benchmark's), not how ours read."""


@dataclass(frozen=True)
class Classification:
    """`category` plus what decided it: the parsed calls, which gold answer matched, and parameter flags.

    `scores` holds TS / PI / CF where a scorer sets them itself rather than by category (RoTBench's official
    script, `metrics/scoring.py`); None: they follow from the category (docs/taxonomy.md).
    """

    category: str
    calls: tuple[ToolCall, ...] = ()
    gold_index: int | None = None
    reason: str = ""
    pairs: tuple[tuple[ToolCall, GoldCall], ...] = field(default=(), repr=False)
    scores: dict[str, float] | None = None


def golds_for(conversation) -> list[GoldAnswer]:
    """Gold answers of a canonical `Conversation` (BFCL's per-parameter alternatives when the loader kept them)."""
    bfcl = conversation.benchmark_gold
    if isinstance(bfcl, BfclGold) and bfcl.possible_answer:
        return [tuple(GoldCall.from_bfcl(e) for e in bfcl.possible_answer)]
    return [tuple(GoldCall.from_call(c) for c in answer) for answer in conversation.gold or ()]


# ----------------------------------------------------------------------------------------------- value rules
def normalise_value(v: Any) -> Any:
    """Strings: strip, collapse whitespace, lower-case, drop one pair of surrounding quotes; numeric strings and
    numbers compare as numbers (1 == 1.0 == "1"); containers recursively."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = " ".join(v.split()).lower()
        if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
            s = s[1:-1].strip()
        try:
            return float(s) if s and s.lstrip("+-").replace(".", "", 1).isdigit() else s
        except ValueError:
            return s
    if isinstance(v, (list, tuple)):
        return [normalise_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k).lower(): normalise_value(x) for k, x in v.items()}
    return v


class PerKeyAlternatives(dict):
    """A BFCL dict answer: each key maps to its list of acceptable values ("" = the key may be left out)."""


def _per_key(answer: Any) -> Any:
    """Mark BFCL's dict answers (alone or in a list) so that values compare key by key, not as a literal dict."""
    if isinstance(answer, dict) and answer and all(isinstance(v, list) for v in answer.values()):
        return PerKeyAlternatives({k: [_per_key(a) for a in alts] for k, alts in answer.items()})
    if isinstance(answer, list) and answer and all(isinstance(v, dict) for v in answer):
        return [_per_key(a) for a in answer]
    return answer


def values_equal(pred: Any, acceptable: list[Any]) -> bool:
    p = normalise_value(pred)
    return any(_matches(pred, a) if _has_per_key(a) else p == normalise_value(a) for a in acceptable)


def _has_per_key(answer: Any) -> bool:
    return isinstance(answer, PerKeyAlternatives) or isinstance(answer, list) and any(
        isinstance(a, PerKeyAlternatives) for a in answer)


def _matches(pred: Any, answer: Any) -> bool:
    """`pred` against a BFCL per-key answer: every given key allowed with an allowed value, no required key
    missing; a list of such answers position by position."""
    if isinstance(answer, list):
        return isinstance(pred, list) and len(pred) == len(answer) and all(_matches(p, a) for p, a in zip(pred, answer))
    if not isinstance(answer, PerKeyAlternatives):
        return normalise_value(pred) == normalise_value(answer)
    if not isinstance(pred, dict) or not set(pred) <= set(answer):
        return False
    return all(k in pred and values_equal(pred[k], [a for a in alts if a != ""]) or k not in pred and "" in alts
               for k, alts in answer.items())


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def exactly_equal(pred: Any, gold: Any) -> bool:
    """Equal as given: numbers numerically (1 == 1.0), everything else by type and value ("1" != 1, True != 1,
    "Paris" != "paris"); containers recursively."""
    if _numeric(pred) and _numeric(gold):
        return pred == gold
    if type(pred) is not type(gold):
        return False
    if isinstance(pred, list):
        return len(pred) == len(gold) and all(exactly_equal(a, b) for a, b in zip(pred, gold))
    if isinstance(pred, dict):
        return pred.keys() == gold.keys() and all(exactly_equal(pred[k], gold[k]) for k in pred)
    return pred == gold


# ---------------------------------------------------------------------------------------------------- classify
def _param_category(h: bool, r: bool, m: bool) -> str | None:
    parts = [name for flag, name in ((h, "hallucinated"), (r, "redundant"), (m, "missing")) if flag]
    return "params_" + "_".join(parts) if parts else None


def classify_call(pred: ToolCall, gold: GoldCall, tools: dict[str, ToolSpec],
                  free_text_tools: frozenset[str] = FREE_TEXT_TOOLS, convention: Convention = "lenient") -> str:
    """Category of one predicted call against one gold call (rules 3-7)."""
    if pred.name not in tools:
        return "tool_hallucination"
    if pred.name != gold.name:
        return "wrong_tool"
    if convention == "paper":
        pred, gold = _string_arguments(pred), _string_gold(gold)
    keys = set(pred.arguments)
    gold_keys = set(gold.values) | set(gold.any_value)
    # A key the gold call uses is never "hallucinated", even when the tool doc omits it (RoTBench golds do this;
    # its PI rule compares key sets with the gold only). Specs without parameters thus fall back to the gold keys.
    declared = set(tools[pred.name].param_names) | gold_keys
    h = bool(keys - declared)
    r = bool((keys & declared) - gold_keys)
    m = bool(gold_keys - keys - gold.optional)
    cat = _param_category(h, r, m)
    if cat:
        return cat
    if convention == "lenient" and pred.name in free_text_tools:
        return "correct"
    if all(value_matches(pred, gold, k, convention) for k in pred.arguments):
        return "correct"
    return "content_filling"


def value_matches(pred: ToolCall, gold: GoldCall, key: str, convention: Convention = "lenient") -> bool:
    """Whether `pred`'s value of `key` is one the gold call accepts (rule 6): any value for an `any_value` key;
    normalised (`values_equal`) under `lenient`, exactly (`exactly_equal`) under `paper`. False when `pred` lacks
    the key."""
    if key not in pred.arguments:
        return False
    if key in gold.any_value:
        return True
    alternatives = gold.values.get(key, [])
    if convention == "lenient":
        return values_equal(pred.arguments[key], alternatives)
    return any(exactly_equal(pred.arguments[key], a) for a in alternatives)


def _string_arguments(call: ToolCall) -> ToolCall:
    """The arguments the reference reward reads: it parses only `key='string'` pairs, so numbers, booleans, None
    and containers, and their keys, take part in no check (paper.md §5.2)."""
    return ToolCall(call.name, {k: v for k, v in call.arguments.items() if isinstance(v, str)})


def _string_gold(gold: GoldCall) -> GoldCall:
    """`gold` restricted to its string values; a key with no string alternative is not read (see above)."""
    values = {k: [a for a in alts if isinstance(a, str)] for k, alts in gold.values.items()}
    return GoldCall(gold.name, {k: alts for k, alts in values.items() if alts}, gold.optional, gold.any_value)


def _match(calls: tuple[ToolCall, ...], answer: GoldAnswer, tools: dict[str, ToolSpec],
           free: frozenset[str], convention: Convention = "lenient") -> tuple[str, tuple]:
    """Best order-insensitive assignment; the worst pair's category. Exhaustive up to 6 calls, greedy beyond."""
    if len(calls) <= 6:
        best = None
        for perm in itertools.permutations(range(len(answer))):
            cats = [classify_call(c, answer[j], tools, free, convention) for c, j in zip(calls, perm)]
            worst = max(cats, key=_RANK.__getitem__)
            key = (_RANK[worst], sum(_RANK[c] for c in cats))
            if best is None or key < best[0]:
                best = (key, worst, tuple(zip(calls, (answer[j] for j in perm))))
        return best[1], best[2]
    remaining, pairs, worst = list(answer), [], "correct"
    for c in calls:
        cats = [classify_call(c, g, tools, free, convention) for g in remaining]
        j = min(range(len(cats)), key=lambda i: _RANK[cats[i]])
        pairs.append((c, remaining.pop(j)))
        worst = max(worst, cats[j], key=_RANK.__getitem__)
    return worst, tuple(pairs)


def classify(prediction: str | ParseResult | Sequence[ToolCall], gold: Sequence[GoldAnswer],
             tools: Sequence[ToolSpec], free_text_tools: frozenset[str] = FREE_TEXT_TOOLS,
             convention: Convention = "lenient") -> Classification:
    """Classify a prediction (raw text, a parse result, or calls) against acceptable gold answers.

    Total and deterministic: any input string gives a category, never an exception. `convention`: see the
    module docstring.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "paper":
        prediction = parse_first_call(prediction) if isinstance(prediction, str) else prediction
        gold = [answer[:1] for answer in gold]  # first gold call (the reference data are single-call steps)
        if not isinstance(prediction, ParseResult):
            prediction = tuple(prediction)[:1]
        elif prediction.ok:
            prediction = ParseResult(calls=prediction.calls[:1], thought=prediction.thought)
    if isinstance(prediction, str):
        prediction = parse_calls(prediction)
    if isinstance(prediction, ParseResult):
        if not prediction.ok:
            if any(len(a) == 0 for a in gold):
                return Classification("correct", gold_index=next(i for i, a in enumerate(gold) if not a),
                                      reason="no call expected, none made")
            kind = "no_call" if prediction.failure.kind == "empty" else "format_error"
            return Classification(kind, reason=prediction.failure.reason)
        calls = prediction.calls
    else:
        calls = tuple(prediction)
    if not gold:
        return Classification("format_error", calls, reason="no gold answer to compare with")
    tool_map = {t.name: t for t in tools}
    best: Classification | None = None
    for i, answer in enumerate(gold):
        if len(answer) != len(calls):
            cat, pairs = ("no_call" if not calls else "wrong_count"), ()
        else:
            cat, pairs = _match(calls, answer, tool_map, free_text_tools, convention) if calls else ("correct", ())
        if best is None or _RANK[cat] < _RANK[best.category]:
            best = Classification(cat, calls, i, pairs=pairs)
    return best
