"""The environment protocol of online RL: one instance per episode, `reset(task)` → opening messages, then
`step(calls)` → (tool messages, done) until done, and an optional final `reward()` (task success).

The configured environment (a `class_path` component of `EpisodeDataModule`) is a prototype: it lists the tasks of
a split, and every episode runs on a fresh deep copy of it (`spawn`), so the G episodes of a GRPO group start from
the same seeded state and share nothing. Calls reach `step` as parsed `ToolCall`s (untrusted model text is parsed
with `ast` by `format.call_format`, never executed as code); what a call does is the environment's business.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec


@dataclass(frozen=True)
class Task:
    """What an episode starts from: the offered tools, the opening messages, and the environment's own record of
    the goal (`goal`, read by that environment only)."""

    id: str
    tools: tuple[ToolSpec, ...]
    messages: tuple[Message, ...]
    goal: Any = None

    def conversation(self, messages: tuple[Message, ...], gold: tuple[ToolCall, ...] | None = None) -> Conversation:
        """The episode so far as a `Conversation` (what renderers and the reward read)."""
        return Conversation(self.id, self.tools, messages, None if gold is None else (gold,), "episode")


class Environment(ABC):
    """A world the policy acts in through tool calls. Subclasses count calls with `record`."""

    calls_made: int = 0
    calls_failed: int = 0

    @abstractmethod
    def tasks(self, split: str, size: int) -> list[Task]:
        """The first `size` tasks of `split` ("train", "val", "test"); deterministic."""

    @abstractmethod
    def reset(self, task: Task) -> tuple[Message, ...]:
        """Start an episode of `task` from its seeded state; the opening messages (usually `task.messages`)."""

    @abstractmethod
    def step(self, calls: tuple[ToolCall, ...]) -> tuple[list[Message], bool]:
        """Run one assistant turn's calls in order: one tool message per call that ran, and whether the episode is
        done (a call ended it, e.g. `finish`). A failing call is an observation (an error message), not an
        exception."""

    def reward(self) -> float | None:
        """Task success in [0, 1] once the episode ended (1: the goal state was reached); None: no goal known."""
        return None

    def expected_calls(self) -> tuple[ToolCall, ...] | None:
        """The calls a correct policy makes next from the current state, when the environment knows them (the gold
        of the per-call IRM reward and of `gold_episode`); None otherwise."""
        return None

    def spawn(self) -> Environment:
        """A fresh instance for one episode."""
        fresh = copy.deepcopy(self)
        fresh.calls_made = fresh.calls_failed = 0
        return fresh

    def record(self, failed: bool) -> None:
        self.calls_made += 1
        self.calls_failed += int(failed)


def gold_episode(env: Environment, task: Task, max_turns: int = 16) -> tuple[Message, ...]:
    """The conversation a policy that always makes `expected_calls` produces (a check of the environment, and the
    reference of the tokenization check); a `ValueError` when the environment does not know its next calls."""
    env = env.spawn()
    messages = list(env.reset(task))
    for _ in range(max_turns):
        calls = env.expected_calls()
        if calls is None:
            raise ValueError(f"{type(env).__name__} does not know the expected calls of task {task.id!r}")
        observations, done = env.step(calls)
        messages += [Message("assistant", calls=calls), *observations]
        if done:
            return tuple(messages)
    raise ValueError(f"task {task.id!r}: the expected calls did not end the episode in {max_turns} turns")
