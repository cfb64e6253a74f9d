"""ToolWorld as an environment: the executor of `data/toolworld` answers the policy's calls, and the task is done
when the gold calls of the generated conversation succeeded in order and the policy called `finish`.

A task's goal is its gold steps (the conversation's correct calls, without the erroneous attempts the generator
injected for MAE). A chained task's second call takes an id from the first call's output; the environment fills in
the id its own executor returned, so a policy that read the output and copied the id reaches the goal. Executor
outputs draw from a generator seeded by the task id: the episodes of one task see the same outputs for the same
calls. A call reaches a step when `taxonomy.classify` scores it "correct" against that step (the metrics' lenient
comparison); `finish` ends the episode either way.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from tl_lightning.data.toolworld import ToolWorld, execute
from tl_lightning.data.toolworld.catalog import ASK_TO_USER, FINISH, TOOLS_BY_NAME
from tl_lightning.envs.environment import Environment, Task
from tl_lightning.format.schema import Conversation, Message, ToolCall
from tl_lightning.rewards.taxonomy import GoldCall, classify_call

USER_AWAY = "The user is not available: carry on with the tools you have."
FREE_TEXT = frozenset({FINISH.name, ASK_TO_USER.name})


@dataclass(frozen=True)
class ToolWorldGoal:
    """The gold steps of a task, and per step the parameters that take the previous step's first result id."""

    steps: tuple[ToolCall, ...]
    id_params: tuple[tuple[str, ...], ...]


def toolworld_task(conv: Conversation) -> Task:
    """A ToolWorld conversation as a task: its opening user request, its tools, its gold steps."""
    erroneous = {e["message_index"] for e in conv.meta.get("errors", [])}
    steps = tuple(m.calls[0] for i, m in enumerate(conv.messages)
                  if m.role == "assistant" and m.calls and i not in erroneous and m.calls[0].name != FINISH.name)
    id_params = tuple(() if k == 0 else tuple(p.name for p in TOOLS_BY_NAME[s.name].params if p.kind.endswith("_id"))
                      for k, s in enumerate(steps))  # only a later step reads an id from an earlier output
    return Task(conv.id, conv.tools, conv.messages[:1], ToolWorldGoal(steps, id_params))


class ToolWorldEnv(Environment):
    """Episodes on ToolWorld tasks (`data/toolworld`): 40 tools in 11 domains, one- and two-step tasks.

    Args:
        seed: the ToolWorld seed (a task depends only on seed, split and index).
        chain_rate: share of two-step tasks (search, then act on the first result).
        distractors: (min, max) unrelated tools offered beside the related ones.
    """

    def __init__(self, seed: int = 0, chain_rate: float = 0.4, distractors: tuple[int, int] = (2, 5)) -> None:
        self.world = ToolWorld(seed=seed, error_rate=0.0, chain_rate=chain_rate, distractors=tuple(distractors))
        self.task: Task | None = None

    def tasks(self, split: str, size: int) -> list[Task]:
        return [toolworld_task(c) for c in self.world.split(split, size)]

    def reset(self, task: Task) -> tuple[Message, ...]:
        self.task, self.reached, self.finished, self.last_output = task, 0, False, ""
        self.available = {t.name: TOOLS_BY_NAME[t.name] for t in task.tools}
        self.rng = random.Random(f"episode/{task.id}")
        return task.messages

    def step(self, calls: tuple[ToolCall, ...]) -> tuple[list[Message], bool]:
        observations = []
        for call in calls:
            if call.name == FINISH.name:
                self.finished = True
                self.record(failed=False)
                return observations, True
            if call.name == ASK_TO_USER.name:
                self.record(failed=True)
                observations.append(Message("tool", USER_AWAY))
                continue
            expected = self.expected_calls()
            output, failed = execute(call, self.available, self.rng)
            self.record(failed)
            if not failed and self._matches(call, expected):
                self.reached += 1
                self.last_output = output
            observations.append(Message("tool", output))
        return observations, False

    def expected_calls(self) -> tuple[ToolCall, ...]:
        goal: ToolWorldGoal = self.task.goal
        if self.reached == len(goal.steps):
            return (ToolCall(FINISH.name, {"answer": "Done."}),)
        step = goal.steps[self.reached]
        ids = goal.id_params[self.reached]
        if ids and self.last_output:
            first = json.loads(self.last_output)["results"][0]["id"]
            step = ToolCall(step.name, {k: (first if k in ids else v) for k, v in step.arguments.items()})
        return (step,)

    def reward(self) -> float:
        return float(self.finished and self.reached == len(self.task.goal.steps))

    def _matches(self, call: ToolCall, expected: tuple[ToolCall, ...]) -> bool:
        if expected[0].name == FINISH.name:
            return False
        tools = {t.name: t for t in self.task.tools}
        return classify_call(call, GoldCall.from_call(expected[0]), tools, FREE_TEXT, "lenient") == "correct"
