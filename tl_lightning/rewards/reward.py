"""Scoring a response, and the IRM rule-based reward: the one path from model text to a category and a reward.

`score_response(text, conversation, convention)` parses a response and classifies it against the conversation's
gold (`taxonomy.classify`); `tool_call_rewards` maps each category to its reward (`RewardTable`, one configurable
value per category; defaults: the paper code, paper.md §5.2). PPO, GRPO and RLOO call `tool_call_rewards`; SFT
validation and evaluation reach `score_response` through `metrics.scoring.score_by_mode`, which replaces it with a
benchmark's official scorer where one is reproduced and asked for.

Note [figure vs code]: the paper's figure scores its S2 example (`keyword=` instead of `query=`) -0.8 ("parameter
hallucination"); the code scores it -1.3, because `query` is then also missing (H and M). We follow the code: the
taxonomy sees both flags, and `params_hallucinated_missing` defaults to -1.3. Set it to -0.8 to score as the figure.
Categories the paper code has no rule for get our values, documented per field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from tl_lightning.format.call_format import ParseResult, parse_calls
from tl_lightning.format.first_call import parse_first_call
from tl_lightning.format.schema import Conversation
from tl_lightning.format.tools import FREE_TEXT_TOOLS, free_text_tools_of
from tl_lightning.rewards.taxonomy import CATEGORIES, Classification, Convention, classify, golds_for


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


def score_response(text: str, conversation: Conversation, convention: Convention = "lenient",
                   free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> tuple[ParseResult, Classification]:
    """Parse a response and classify it against the conversation's gold answers, its offered tools and its own
    free-text tools (noisy data renames them). `convention`: "lenient" reads every call of the output, "paper"
    the first call as the reference code does (docs/taxonomy.md)."""
    parsed = parse_calls(text) if convention == "lenient" else parse_first_call(text)
    return parsed, classify(parsed, golds_for(conversation), conversation.tools,
                            free_text_tools_of(conversation, free_text_tools), convention)


def tool_call_rewards(responses: Sequence[str], conversations: Sequence[Conversation],
                      table: RewardTable = RewardTable(), convention: Convention = "paper",
                      free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> tuple[list[float], list[Classification]]:
    """The IRM reward of each response, `table(category)`, and its classification (pure, batched). The reward's
    convention defaults to `paper` (the reference code's); see docs/taxonomy.md."""
    classified = [score_response(t, c, convention, free_text_tools)[1]
                  for t, c in zip(responses, conversations, strict=True)]
    return [table(c.category) for c in classified], classified
