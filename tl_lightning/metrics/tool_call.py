"""Tool-call metrics built on `taxonomy.classify`, so metrics and the IRM reward can never disagree.

RoTBench definitions (data.md §2.4): TS = the right tool(s); PI = TS and the right parameter-name set; CF = PI and
the right values. They are nested (TS >= PI >= CF) and are shares of *all* items (unparseable output counts as a
failure). Also: the rate of every error category, exact match (CF without the free-text exemption for
finish/ask_to_user), and argument F1 over (key, normalised value) pairs against the matched gold answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from tl_lightning.format.schema import ToolSpec
from tl_lightning.format.tools import FREE_TEXT_TOOLS
from tl_lightning.rewards.taxonomy import (
    CATEGORIES,
    RIGHT_PARAMS,
    RIGHT_TOOL,
    Classification,
    GoldAnswer,
    classify,
    normalise_value,
    values_equal,
)

SCALARS = ("ts", "pi", "cf", "exact_match", "arg_f1")


def _pairs(c: Classification) -> tuple[set, set, bool]:
    pred, gold, exact = set(), set(), True
    for call, g in c.pairs:
        for k, v in call.arguments.items():
            pred.add((call.name, k, repr(normalise_value(v))))
        for k, alts in g.values.items():
            value = call.arguments.get(k, alts[0] if alts else None)
            ok = k in call.arguments and values_equal(value, alts)
            gold.add((g.name, k, repr(normalise_value(value if ok else (alts[0] if alts else None)))))
            exact &= ok or (k in g.optional and k not in call.arguments) or k in g.any_value
    return pred, gold, exact


def item_scores(c: Classification) -> dict[str, float]:
    """Per-item TS / PI / CF / exact match / argument F1 from a classification."""
    ts, pi, cf = c.category in RIGHT_TOOL, c.category in RIGHT_PARAMS, c.category == "correct"
    if c.scores is not None:  # an official scorer's own TS / PI / CF (RoTBench evaluate.py)
        ts, pi, cf = (bool(c.scores[k]) for k in ("ts", "pi", "cf"))
    if c.category == "correct" and not c.calls:  # no call expected, none made
        return {"ts": 1.0, "pi": 1.0, "cf": 1.0, "exact_match": 1.0, "arg_f1": 1.0}
    pred, gold, exact = _pairs(c)
    if not pred and not gold:
        f1 = 1.0 if ts else 0.0
    else:
        hit = len(pred & gold)
        f1 = 2 * hit / (len(pred) + len(gold)) if (pred or gold) else 0.0
    return {"ts": float(ts), "pi": float(pi), "cf": float(cf), "exact_match": float(cf and exact), "arg_f1": f1}


def tool_call_metrics(predictions: Sequence, golds: Sequence[Sequence[GoldAnswer]],
                      tools: Sequence[Sequence[ToolSpec]],
                      free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> dict[str, float]:
    """Functional twin of `ToolCallMetrics`: metric name → value in [0, 1]."""
    m = ToolCallMetrics(free_text_tools=free_text_tools)
    m.update(predictions, golds, tools)
    return {k: float(v) for k, v in m.compute().items()}


class ToolCallMetrics(Metric):
    """Accumulates TS / PI / CF, exact match, argument F1 and per-category rates; sums sync across processes.

    `update(predictions, golds, tools)` takes model outputs (text, parse results or call lists), each item's
    acceptable gold answers and its offered tools. `compute()` returns `ts`, `pi`, `cf`, `exact_match`, `arg_f1`
    and `rate/<category>` for every category of the taxonomy.
    """

    full_state_update = False

    def __init__(self, free_text_tools: frozenset[str] = FREE_TEXT_TOOLS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.free_text_tools = frozenset(free_text_tools)
        self.add_state("category_counts", torch.zeros(len(CATEGORIES), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sums", torch.zeros(len(SCALARS), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence, golds: Sequence[Sequence[GoldAnswer]],
               tools: Sequence[Sequence[ToolSpec]]) -> None:
        self.update_classified([classify(pred, gold, tl, self.free_text_tools)
                                for pred, gold, tl in zip(predictions, golds, tools, strict=True)])

    def update_classified(self, classifications: Sequence[Classification]) -> None:
        """Accumulate items already classified (e.g. by `predict`, with per-item free-text tools)."""
        counts = torch.zeros_like(self.category_counts)
        sums = torch.zeros_like(self.sums)
        for c in classifications:
            counts[CATEGORIES.index(c.category)] += 1
            scores = item_scores(c)
            sums += torch.tensor([scores[k] for k in SCALARS], dtype=sums.dtype, device=sums.device)
        self.category_counts += counts
        self.sums += sums
        self.total += len(classifications)
        self._update_count += 1  # torchmetrics counts `update` calls only; this is one too (no "compute before update")

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.total.clamp_min(1)
        out = {k: self.sums[i] / n for i, k in enumerate(SCALARS)}
        out.update({f"rate/{c}": self.category_counts[i] / n for i, c in enumerate(CATEGORIES)})
        return out


VALIDITY = ("format_valid", "tool_valid", "params_valid")


def schema_validity(parsed, tools: Sequence[ToolSpec]) -> dict[str, float]:
    """Offline checks for items without gold (ToolEyes; ours, not the paper's DE/CE/VA): the output parses to at
    least one call; every tool name is offered; every call has its required parameters and no undeclared key."""
    if not parsed.ok or not parsed.calls:
        return dict.fromkeys(VALIDITY, 0.0)
    by_name = {t.name: t for t in tools}
    if any(c.name not in by_name for c in parsed.calls):
        return {"format_valid": 1.0, "tool_valid": 0.0, "params_valid": 0.0}
    ok = all(set(by_name[c.name].required) <= set(c.arguments) and
             (not by_name[c.name].params or set(c.arguments) <= set(by_name[c.name].param_names)) for c in parsed.calls)
    return {"format_valid": 1.0, "tool_valid": 1.0, "params_valid": float(ok)}


class SchemaValidityMetrics(Metric):
    """Shares of outputs passing `schema_validity`'s three nested checks."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("sums", torch.zeros(len(VALIDITY), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, parsed: Sequence, tools: Sequence[Sequence[ToolSpec]]) -> None:
        for p, t in zip(parsed, tools, strict=True):
            v = schema_validity(p, t)
            self.sums += torch.tensor([v[k] for k in VALIDITY], dtype=self.sums.dtype, device=self.sums.device)
        self.total += len(parsed)

    def compute(self) -> dict[str, torch.Tensor]:
        return {k: self.sums[i] / self.total.clamp_min(1) for i, k in enumerate(VALIDITY)}
