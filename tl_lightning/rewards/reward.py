"""Scoring a response, and the rewards of a tool call: the one path from model text to a category and a reward.

`score_response(text, conversation, convention)` parses a response and classifies it against the conversation's
gold (`taxonomy.classify`); `tool_call_rewards` turns each classification into a reward with a `CallReward`, chosen
in YAML (`model.init_args.reward`, a `class_path`):
  * `RewardTable`: the paper's IRM, one configurable value per category (defaults: the paper code, paper.md §5.2);
  * `ExactMatchReward`: binary, 1 for a correct answer and 0 otherwise (what Tool-N1 found slightly better);
  * `PartialCreditReward`: credit for the right name, the right keys and the right values, in parts (in the
    spirit of ToolRL's decomposed reward; the formula is ours, below).
PPO, GRPO and RLOO call `tool_call_rewards`; SFT
validation and evaluation reach `score_response` through `metrics.scoring.score_by_mode`, which replaces it with a
benchmark's official scorer where one is reproduced and asked for.

Note [figure vs code]: the paper's figure scores its S2 example (`keyword=` instead of `query=`) -0.8 ("parameter
hallucination"); the code scores it -1.3, because `query` is then also missing (H and M). We follow the code: the
taxonomy sees both flags, and `params_hallucinated_missing` defaults to -1.3. Set it to -0.8 to score as the figure.
Categories the paper code has no rule for get our values, documented per field.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, fields

from tl_lightning.format.call_format import ParseResult, parse_calls
from tl_lightning.format.first_call import parse_first_call
from tl_lightning.format.schema import Conversation
from tl_lightning.format.tools import FREE_TEXT_TOOLS, free_text_tools_of
from tl_lightning.rewards.taxonomy import CATEGORIES, Classification, Convention, classify, golds_for, value_matches


@dataclass(frozen=True)
class CallReward(ABC):
    """The reward of one classified response (pure)."""

    @abstractmethod
    def score(self, classified: Classification, convention: Convention = "paper") -> float:
        """The reward of `classified`, the response's `taxonomy.classify` result under `convention`."""


@dataclass(frozen=True)
class RewardTable(CallReward):
    """The IRM reward: a value per category of `taxonomy.classify`."""

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

    def score(self, classified: Classification, convention: Convention = "paper") -> float:
        return self(classified.category)


@dataclass(frozen=True)
class ExactMatchReward(CallReward):
    """Binary: `correct` when the answer is right (category `correct`: exact string values under the `paper`
    convention, normalised ones under `lenient`), `incorrect` for everything else, unparseable output included.

    Args:
        correct: the reward of a right answer.
        incorrect: the reward of any other.
    """

    correct: float = 1.0
    incorrect: float = 0.0

    def score(self, classified: Classification, convention: Convention = "paper") -> float:
        return self.correct if classified.category == "correct" else self.incorrect


@dataclass(frozen=True)
class PartialCreditReward(CallReward):
    """Decomposed partial credit. Each predicted call paired with a gold call (the taxonomy's best pairing) earns
    `name` for the gold tool name, and, only then, `keys` × the Jaccard overlap of its keys with the gold call's
    and `values` × the share of the gold keys whose value the gold accepts (`taxonomy.value_matches`; a call of
    another tool earns nothing for its keys or values). The reward is the mean over pairs, so a right answer earns
    `name + keys + values`; a different number of calls than the gold earns 0; unparseable output and a missing
    call earn `unparsed`. (Named so, not `format_error`: jsonargparse carries init args of equal names over from
    the default `RewardTable`, whose `format_error` is -2.)

    Args:
        name: credit for the right tool name.
        keys: credit for the keys, times their Jaccard overlap with the gold call's (1 when both have none).
        values: credit for the values, times the share of gold keys with an accepted value (1 when none).
        unparsed: the reward of unparseable output or no call where one was expected.
    """

    name: float = 1.0
    keys: float = 1.0
    values: float = 1.0
    unparsed: float = -1.0

    def score(self, classified: Classification, convention: Convention = "paper") -> float:
        if classified.category == "correct":  # also the free-text tools whose values are not compared
            return self.name + self.keys + self.values
        if classified.category in ("format_error", "no_call"):
            return self.unparsed
        if not classified.pairs:
            return 0.0
        return sum(self._pair(p, g, convention) for p, g in classified.pairs) / len(classified.pairs)

    def _pair(self, pred, gold, convention: Convention) -> float:
        if pred.name != gold.name:
            return 0.0
        gold_keys = set(gold.values) | set(gold.any_value)
        union = gold_keys | set(pred.arguments)
        overlap = len(gold_keys & set(pred.arguments)) / len(union) if union else 1.0
        right = sum(value_matches(pred, gold, k, convention) for k in gold_keys)
        return self.name + self.keys * overlap + self.values * (right / len(gold_keys) if gold_keys else 1.0)


def score_response(text: str, conversation: Conversation, convention: Convention = "lenient",
                   free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> tuple[ParseResult, Classification]:
    """Parse a response and classify it against the conversation's gold answers, its offered tools and its own
    free-text tools (noisy data renames them). `convention`: "lenient" reads every call of the output, "paper"
    the first call as the reference code does (docs/taxonomy.md)."""
    parsed = parse_calls(text) if convention == "lenient" else parse_first_call(text)
    return parsed, classify(parsed, golds_for(conversation), conversation.tools,
                            free_text_tools_of(conversation, free_text_tools), convention)


def tool_call_rewards(responses: Sequence[str], conversations: Sequence[Conversation],
                      reward: CallReward = RewardTable(), convention: Convention = "paper",
                      free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> tuple[list[float], list[Classification]]:
    """The reward of each response (`reward.score`, the IRM table by default) and its classification (pure,
    batched). The convention defaults to `paper` (the reference code's); see docs/taxonomy.md."""
    classified = [score_response(t, c, convention, free_text_tools)[1]
                  for t, c in zip(responses, conversations, strict=True)]
    return [reward.score(c, convention) for c in classified], classified
