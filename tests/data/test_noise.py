"""RoTBench-style noise: consistent renaming of tools, parameters, calls and feedback."""

from __future__ import annotations

import pytest

from tl_lightning.data.noise import ADDED_PARAM_DESCRIPTION, NOISE_LEVELS, _rename_in_feedback, add_noise
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.format.call_format import parse_calls, render_call
from tl_lightning.format.schema import ToolCall
from tl_lightning.metrics.tool_call import schema_validity
from tl_lightning.rewards.taxonomy import classify, golds_for

CONVS = ToolWorld(seed=3, error_rate=0.5).split("noise-test", 40)


def test_clean_is_identity():
    assert add_noise(CONVS[0], "clean") is CONVS[0]


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="unknown noise level"):
        add_noise(CONVS[0], "extreme")


@pytest.mark.parametrize("level", NOISE_LEVELS[1:])
def test_gold_stays_valid_and_scores_correct(level):
    """Every gold call of the noisy conversation is a valid call of the noisy tool list, and the gold as a
    prediction is classified correct (free-text roles follow the renamed finish / ask_to_user)."""
    for conv in CONVS:
        noisy = add_noise(conv, level, seed=1)
        for step in all_step_prompts([noisy]):
            (answer,) = step.gold
            text = "\n".join(render_call(c).text for c in answer)
            assert schema_validity(parse_calls(text), noisy.tools)["params_valid"] == 1.0, (level, text)
            c = classify(text, golds_for(step), step.tools, frozenset(step.free_text_tools))
            assert c.category == "correct", (level, text, c)


@pytest.mark.parametrize("level", ["slight", "medium"])
def test_every_name_changes_and_stays_distinct(level):
    for conv in CONVS:
        tool_map = add_noise(conv, level).meta["noise"]["tools"]
        assert all(old != new and new.isidentifier() for old, new in tool_map.items())
        assert len(set(tool_map.values())) == len(tool_map)


def test_heavy_shuffles_names_among_the_offered_tools():
    conv = CONVS[0]
    noisy = add_noise(conv, "heavy", seed=2)
    assert sorted(t.name for t in noisy.tools) == sorted(t.name for t in conv.tools)
    by_desc = {t.description: t.name for t in noisy.tools}
    finish = next(t for t in conv.tools if t.name == "finish")
    assert by_desc[finish.description] in noisy.free_text_tools  # the finish role moved with its description


def test_heavy_added_parameter_says_its_value_and_gold_sets_it():
    noisy = [add_noise(c, "heavy", seed=s) for c in CONVS for s in range(3)]
    found = 0
    for n in noisy:
        for old, (name, value) in n.meta["noise"]["added"].items():
            spec = next(t for t in n.tools if t.name == n.meta["noise"]["tools"][old])
            assert spec.params[-1].description == ADDED_PARAM_DESCRIPTION.format(value=value)
            calls = [c for m in n.messages for c in m.calls if c.name == spec.name]
            assert all(c.arguments[name] == value for c in calls)
            found += bool(calls)
    assert found > 0


def test_deterministic_in_seed_and_conversation():
    a, b, c = add_noise(CONVS[1], "union", 5), add_noise(CONVS[1], "union", 5), add_noise(CONVS[1], "union", 6)
    assert a == b and a != c


def test_feedback_renaming_is_one_pass_for_swaps():
    """A heavy shuffle maps a → b and b → a: the feedback must not be renamed twice."""
    call = ToolCall("f", {"a": 1, "b": 2})
    text = "TypeError: f() missing 1 required positional argument: 'a' (see 'b'); not_f() and 'ab' stay"
    out = _rename_in_feedback(text, (call,), {"f": "g"}, {"f": {"a": "b", "b": "a"}})
    assert out == "TypeError: g() missing 1 required positional argument: 'b' (see 'a'); not_f() and 'ab' stay"


def test_toolworld_feedback_quotes_the_renamed_names():
    hits = 0
    for conv in CONVS:
        noisy = add_noise(conv, "medium")
        for old, new in zip(conv.messages, noisy.messages):
            if old.role == "tool" and "TypeError" in old.content:
                prev = noisy.messages[noisy.messages.index(new) - 1].calls[0]
                assert f"{prev.name}()" in new.content
                hits += 1
    assert hits > 0
