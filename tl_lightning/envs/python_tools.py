"""Plain Python functions as tools: bring your own functions and tasks.

Each function's schema comes from its type hints and its Google-style docstring (`transformers.utils.
get_json_schema`, the same reading transformers' chat templates use), so a function with a documented `Args:`
section is a tool as it is. A `finish(answer)` tool ends the episode. Tasks are a JSONL file, one task per line:

    {"id": "t1", "split": "train", "query": "What is 17 * 23?", "answer": "391"}

`split` defaults to "train"; `answer` is optional: with it, the episode succeeds when `finish`'s answer contains
it (case and spacing ignored); without it, the environment has no reward of its own. Calls run with the parsed
literal arguments only (`format.call_format` parses model text with `ast`); a call that does not bind to the
signature, or raises, answers with the error's type and message, as Python would print it.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path

from transformers.utils import get_json_schema

from tl_lightning.core.errors import DataError, UserError
from tl_lightning.envs.environment import Environment, Task
from tl_lightning.format.schema import Message, ToolCall, ToolParam, ToolSpec

FINISH_TOOL = ToolSpec("finish", "Finish the task and give your answer.",
                       (ToolParam("answer", "string", "Your answer for the task."),))
MAX_OUTPUT_CHARS = 2000  # a tool output longer than this is cut (the episode's token budget is the real bound)


def load_function(path: str) -> Callable:
    """`package.module.function` → the function; a one-line `UserError` when it cannot be imported."""
    module, _, name = path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError) as e:
        raise UserError(f"tool function {path!r} cannot be imported: {e}") from None
    if not callable(fn):
        raise UserError(f"tool function {path!r} is not a function (give package.module.function)")
    return fn


def function_spec(fn: Callable) -> ToolSpec:
    """The tool spec of a documented, type-hinted function; a one-line `UserError` when it is not one."""
    try:
        return ToolSpec.from_openai(get_json_schema(fn))
    except Exception as e:  # transformers raises several types for undocumented or untyped parameters
        raise UserError(f"tool function {fn.__name__!r}: {e} (type-hint every parameter and document it under "
                        "Args: in the docstring)") from None


def normalise(text: str) -> str:
    return " ".join(str(text).lower().split())


class PythonTools(Environment):
    """Episodes where the tools are Python functions.

    Args:
        functions: import paths of the tool functions (`package.module.function`).
        tasks: JSONL file of tasks (`id`, `query`, optional `answer` and `split`).
    """

    def __init__(self, functions: list[str], tasks: str) -> None:
        self.functions = {fn.__name__: fn for fn in map(load_function, functions)}
        self.specs = tuple(function_spec(fn) for fn in self.functions.values()) + (FINISH_TOOL,)
        self.tasks_path = Path(tasks)
        self.answer: str | None = None

    def tasks(self, split: str, size: int) -> list[Task]:
        if not self.tasks_path.is_file():
            raise DataError(f"tasks file {self.tasks_path} not found")
        out = []
        for n, line in enumerate(self.tasks_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                query = row["query"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise DataError(f"{self.tasks_path}:{n}: not a task (a JSON object with 'query'): {e}") from None
            if row.get("split", "train") == split:
                out.append(Task(str(row.get("id", f"task-{n}")), self.specs, (Message("user", str(query)),),
                                row.get("answer")))
        if not out:
            raise DataError(f"{self.tasks_path}: no tasks of split {split!r}")
        return out[:size]

    def reset(self, task: Task) -> tuple[Message, ...]:
        self.task, self.answer, self.finished = task, None, False
        return task.messages

    def step(self, calls: tuple[ToolCall, ...]) -> tuple[list[Message], bool]:
        observations = []
        for call in calls:
            if call.name == FINISH_TOOL.name:
                self.answer, self.finished = str(call.arguments.get("answer", "")), True
                self.record(failed=False)
                return observations, True
            output, failed = self._run(call)
            self.record(failed)
            observations.append(Message("tool", output[:MAX_OUTPUT_CHARS]))
        return observations, False

    def _run(self, call: ToolCall) -> tuple[str, bool]:
        fn = self.functions.get(call.name)
        if fn is None:
            return f"NameError: name '{call.name}' is not defined", True
        try:
            inspect.signature(fn).bind(**call.arguments)
        except TypeError as e:
            return f"TypeError: {call.name}() {e}", True
        try:
            result = fn(**call.arguments)
        except Exception as e:  # the tool's own failure is the policy's observation
            return f"{type(e).__name__}: {e}", True
        return (result if isinstance(result, str) else json.dumps(result, ensure_ascii=False, default=str)), False

    def reward(self) -> float | None:
        if self.task.goal is None:
            return None
        return float(self.finished and normalise(self.task.goal) in normalise(self.answer or ""))
