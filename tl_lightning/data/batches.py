"""Typed batches that the datamodules hand to the systems, so no system needs the datamodule's tokenizer or
renderer: the prompt tokens come ready, the conversations come along for scoring."""

from __future__ import annotations

from dataclasses import dataclass

from tl_lightning.format.schema import Conversation
from tl_lightning.rewards.taxonomy import ScoringMode


@dataclass(frozen=True)
class PromptBatch:
    """Step prompts to generate from.

    Attributes:
        input_ids: each prompt's token ids, unpadded, as the renderer tokenizes them (generation pads on the left).
        conversations: the step prompts (offered tools, gold answers) the responses are scored against.
        groups: per prompt, the benchmark it belongs to (evaluation), or "".
        scoring: per prompt, how its response is scored (its benchmark's `scoring`; "lenient" elsewhere).
    """

    input_ids: list[list[int]]
    conversations: list[Conversation]
    groups: list[str]
    scoring: list[ScoringMode] | None = None

    def __post_init__(self) -> None:
        if self.scoring is None:
            object.__setattr__(self, "scoring", ["lenient"] * len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)

    def repeat_each(self, times: int) -> "PromptBatch":
        """Each prompt `times` times in a row (a group of samples of one prompt, for group-relative advantages)."""
        if times == 1:
            return self
        def rep(xs: list) -> list:
            return [x for x in xs for _ in range(times)]

        return PromptBatch(rep(self.input_ids), rep(self.conversations), rep(self.groups), rep(self.scoring))

    def select(self, keep: list[int]) -> "PromptBatch":
        """The prompts at positions `keep`, in that order."""
        return PromptBatch(*([xs[i] for i in keep] for xs in (self.input_ids, self.conversations, self.groups,
                                                               self.scoring)))


def prompt_item(input_ids: list[int], conversation: Conversation, group: str = "",
                scoring: ScoringMode = "lenient") -> dict:
    return {"input_ids": input_ids, "conversation": conversation, "group": group, "scoring": scoring}


def collate_prompts(items: list[dict]) -> PromptBatch:
    """DataLoader collate: `prompt_item` dicts → one `PromptBatch`."""
    return PromptBatch(*([i[k] for i in items] for k in ("input_ids", "conversation", "group", "scoring")))
