"""ToolWorld as an environment: the gold policy reaches every goal, wrong calls are observations, chained tasks take
the id the executor returned, and the episodes of one task see the same outputs."""

import json

import pytest

from tl_lightning.envs.environment import gold_episode
from tl_lightning.envs.toolworld import USER_AWAY, ToolWorldEnv
from tl_lightning.format.schema import ToolCall

ENV = ToolWorldEnv(seed=0)
TASKS = ENV.tasks("val", 40)


def _run(task, turns):
    env = ENV.spawn()
    env.reset(task)
    outputs = []
    for calls in turns:
        observations, done = env.step(tuple(calls))
        outputs.append([m.content for m in observations])
        if done:
            break
    return env, outputs


@pytest.mark.parametrize("task", TASKS[:20], ids=lambda t: t.id)
def test_the_gold_policy_reaches_the_goal(task):
    messages = gold_episode(ENV, task)
    env, _ = _run(task, [m.calls for m in messages if m.role == "assistant"])
    assert env.reward() == 1.0 and env.calls_failed == 0


def test_a_chained_task_takes_the_id_the_executor_returned():
    task = next(t for t in TASKS if len(t.goal.steps) == 2 and t.goal.id_params[1])
    env = ENV.spawn()
    env.reset(task)
    (first_output,), done = env.step(task.goal.steps[:1])
    returned = json.loads(first_output.content)["results"][0]["id"]
    expected = env.expected_calls()[0]
    assert not done and returned in expected.arguments.values()
    # the id of the generated conversation is not the one this episode saw: copying it from the data fails
    stale = task.goal.steps[1]
    if returned not in stale.arguments.values():
        env.step((stale,))
        assert env.reached == 1
    env.step((expected,))
    env.step((ToolCall("finish", {"answer": "ok"}),))
    assert env.reward() == 1.0


def test_errors_are_observations_and_the_goal_is_not_reached():
    task = TASKS[0]
    env, outputs = _run(task, [[ToolCall("no_such_tool", {})], [ToolCall(task.goal.steps[0].name, {"bogus": 1})],
                               [ToolCall("ask_to_user", {"question": "?"})], [ToolCall("finish", {"answer": "x"})]])
    assert outputs[0] == ["NameError: name 'no_such_tool' is not defined"]
    assert "unexpected keyword argument 'bogus'" in outputs[1][0]
    assert outputs[2] == [USER_AWAY]
    assert env.reward() == 0.0 and env.calls_made == 4 and env.calls_failed == 3


def test_finishing_early_scores_zero_and_a_group_sees_the_same_outputs():
    task = next(t for t in TASKS if len(t.goal.steps) == 2)
    env, _ = _run(task, [[ToolCall("finish", {"answer": "done"})]])
    assert env.reward() == 0.0
    _, a = _run(task, [task.goal.steps[:1]])
    _, b = _run(task, [task.goal.steps[:1]])
    assert a == b  # outputs are seeded by the task: the G episodes of a group start from the same state
    assert ENV.spawn().calls_made == 0
