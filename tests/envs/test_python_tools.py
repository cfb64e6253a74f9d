"""Plain Python functions as tools: schemas from type hints and docstrings, calls that bind or fail like Python,
tasks from JSONL with one-line errors, success from the finish answer."""

import json

import pytest

from tl_lightning.core.errors import DataError, UserError
from tl_lightning.envs.environment import Task
from tl_lightning.envs.python_tools import PythonTools, function_spec
from tl_lightning.format.schema import Message, ToolCall


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


def divide(a: float, b: float) -> float:
    """Divide a by b.

    Args:
        a: the dividend
        b: the divisor
    """
    return a / b


def undocumented(x):
    return x


@pytest.fixture
def env(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps(t) for t in [
        {"id": "m", "query": "What is 17 * 23?", "answer": "391"},
        {"id": "v", "split": "val", "query": "Say hi."}]) + "\n")
    return PythonTools([f"{__name__}.multiply", f"{__name__}.divide"], str(tasks))


def test_a_documented_function_is_a_tool():
    spec = function_spec(multiply)
    assert spec.name == "multiply" and spec.description == "Multiply two integers."
    assert [(p.name, p.type, p.required) for p in spec.params] == [("a", "integer", True), ("b", "integer", True)]
    with pytest.raises(UserError, match="undocumented"):
        function_spec(undocumented)
    with pytest.raises(UserError, match="cannot be imported"):
        PythonTools(["no_such_module.fn"], "unused.jsonl")


def test_calls_run_bind_or_fail_like_python(env):
    task = env.tasks("train", 10)[0]
    assert [t.name for t in task.tools] == ["multiply", "divide", "finish"]
    episode = env.spawn()
    assert episode.reset(task) == (Message("user", "What is 17 * 23?"),)
    outputs, done = episode.step((ToolCall("multiply", {"a": 17, "b": 23}), ToolCall("multiply", {"a": 1}),
                                  ToolCall("divide", {"a": 1, "b": 0}), ToolCall("pow", {})))
    assert [m.content for m in outputs] == ["391", "TypeError: multiply() missing a required argument: 'b'",
                                            "ZeroDivisionError: division by zero",
                                            "NameError: name 'pow' is not defined"]
    assert not done and episode.calls_failed == 3
    outputs, done = episode.step((ToolCall("finish", {"answer": "It is 391."}), ToolCall("multiply", {})))
    assert outputs == [] and done and episode.reward() == 1.0


def test_success_needs_the_answer_and_a_task_without_one_has_no_reward(env):
    episode = env.spawn()
    episode.reset(env.tasks("train", 1)[0])
    episode.step((ToolCall("finish", {"answer": "about 400"}),))
    assert episode.reward() == 0.0
    episode.reset(env.tasks("val", 1)[0])
    assert episode.reward() is None


def test_bad_task_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(DataError, match="bad.jsonl:1: not a task"):
        PythonTools([f"{__name__}.multiply"], str(bad)).tasks("train", 1)
    with pytest.raises(DataError, match="not found"):
        PythonTools([f"{__name__}.multiply"], str(tmp_path / "none.jsonl")).tasks("train", 1)
    bad.write_text('{"query": "q", "split": "val"}\n')
    with pytest.raises(DataError, match="no tasks of split 'train'"):
        PythonTools([f"{__name__}.multiply"], str(bad)).tasks("train", 1)
    assert isinstance(PythonTools([f"{__name__}.multiply"], str(bad)).tasks("val", 1)[0], Task)
