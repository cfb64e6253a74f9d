"""Trajectories → per-step prompts with gold: the unit of PPO rollouts, validation decoding and evaluation.

A step prompt is the conversation up to (not including) an assistant call, with that call as the gold answer.
Calls whose tool feedback is an error (MAE detector) are not gold; they stay in the history of later steps, as
in training. Benchmark items that already carry `gold` (RoTBench, BFCL, ToolAlpaca) are step prompts as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from tl_lightning.data.mae import ErrorDetector, StructuredDetector, erroneous_turns
from tl_lightning.format.schema import Conversation


def step_prompts(conv: Conversation, detector: ErrorDetector | None = StructuredDetector(),
                 first_only: bool = False) -> Iterator[Conversation]:
    """Yield one prompt per correct assistant call of `conv` (or `conv` itself if it already has gold)."""
    if conv.gold is not None:
        yield conv
        return
    bad = erroneous_turns(conv, detector)
    for i, m in enumerate(conv.messages):
        if m.role == "assistant" and m.calls and i not in bad:
            # replace(): every other field (free-text tools, ...) carries over to the step
            yield replace(conv, id=f"{conv.id}#{i}", messages=conv.messages[:i], gold=(m.calls,),
                          meta={**conv.meta, "step": i})
            if first_only:
                return


def all_step_prompts(convs: Iterable[Conversation], detector: ErrorDetector | None = StructuredDetector(),
                     first_only: bool = False) -> list[Conversation]:
    return [p for c in convs for p in step_prompts(c, detector, first_only)]
