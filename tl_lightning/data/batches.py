"""Typed batches that the datamodules hand to the systems, so no system needs the datamodule's tokenizer or
renderer: the prompt tokens come ready, the conversations come along for scoring."""

from __future__ import annotations

from dataclasses import dataclass

from tl_lightning.format.schema import Conversation


@dataclass(frozen=True)
class PromptBatch:
    """Step prompts to generate from.

    Attributes:
        input_ids: each prompt's token ids, unpadded, as the renderer tokenizes them (generation pads on the left).
        conversations: the step prompts (offered tools, gold answers) the responses are scored against.
        groups: per prompt, the benchmark it belongs to (evaluation), or "".
    """

    input_ids: list[list[int]]
    conversations: list[Conversation]
    groups: list[str]

    def __len__(self) -> int:
        return len(self.input_ids)

    def repeat_each(self, times: int) -> "PromptBatch":
        """Each prompt `times` times in a row (a group of samples of one prompt, for group-relative advantages)."""
        if times == 1:
            return self
        def rep(xs: list) -> list:
            return [x for x in xs for _ in range(times)]

        return PromptBatch(rep(self.input_ids), rep(self.conversations), rep(self.groups))


def prompt_item(input_ids: list[int], conversation: Conversation, group: str = "") -> dict:
    return {"input_ids": input_ids, "conversation": conversation, "group": group}


def collate_prompts(items: list[dict]) -> PromptBatch:
    """DataLoader collate: `prompt_item` dicts → one `PromptBatch`."""
    return PromptBatch([i["input_ids"] for i in items], [i["conversation"] for i in items], [i["group"] for i in items])
