"""The IRM rule-based reward: one configurable value per error category (defaults: the paper code, paper.md §5.2).

Note [figure vs code]: the paper's figure scores its S2 example (`keyword=` instead of `query=`) -0.8 ("parameter
hallucination"); the code scores it -1.3, because `query` is then also missing (H and M). We follow the code: the
taxonomy sees both flags, and `params_hallucinated_missing` defaults to -1.3. Set it to -0.8 to score as the figure.
Categories the paper code has no rule for get our values, documented per field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from tl_lightning.format.schema import ToolSpec
from tl_lightning.format.tools import FREE_TEXT_TOOLS
from tl_lightning.rewards.taxonomy import CATEGORIES, Convention, GoldAnswer, classify


@dataclass(frozen=True)
class RewardTable:
    """Reward per category of `taxonomy.classify`."""

    correct: float = 1.0
    """All right."""
    content_filling: float = -0.25
    """Right tool and keys, a value differs."""
    params_redundant: float = -0.5
    """A declared key the gold call does not use."""
    params_missing: float = -0.5
    """A gold key is missing."""
    params_hallucinated: float = -0.8
    """A key the tool does not declare."""
    params_redundant_missing: float = -1.0
    """Redundant and missing keys."""
    params_hallucinated_redundant: float = -1.3
    """Hallucinated and redundant keys."""
    params_hallucinated_missing: float = -1.3
    """Hallucinated and missing keys (the paper's S2 example; its figure says -0.8, its code -1.3)."""
    params_hallucinated_redundant_missing: float = -1.8
    """All three parameter issues."""
    wrong_tool: float = -1.5
    """An offered tool, but not the gold one."""
    wrong_count: float = -1.5
    """Ours (no rule in the paper code): number of calls differs from the gold answer."""
    tool_hallucination: float = -2.0
    """A tool name that is not offered."""
    no_call: float = -2.0
    """Ours: an empty answer where a call was required (the paper code scores it as a format error)."""
    format_error: float = -2.0
    """Unparseable output."""

    def __post_init__(self) -> None:
        missing = set(CATEGORIES) - {f.name for f in fields(self)}
        assert not missing, f"RewardTable lacks categories {missing}"  # guards the taxonomy/reward link

    def __call__(self, category: str) -> float:
        return float(getattr(self, category))


def tool_call_rewards(predictions: Sequence[str], golds: Sequence[Sequence[GoldAnswer]],
                      tools: Sequence[Sequence[ToolSpec]], table: RewardTable = RewardTable(),
                      free_text_tools: frozenset[str] = FREE_TEXT_TOOLS,
                      convention: Convention = "paper") -> list[float]:
    """Reward of each prediction: `table[classify(prediction, gold, tools, convention=...).category]` (pure, batched).
    The IRM reward's convention defaults to `paper` (the reference code's); see docs/taxonomy.md."""
    return [table(classify(p, g, t, free_text_tools, convention).category)
            for p, g, t in zip(predictions, golds, tools, strict=True)]
