"""Inputs the loaders used to accept silently (issue #24 item 8): each kind, in every format where it can occur, now
ends in a counted skip under a stable reason (the good item beside it still loads; on_error "raise" stops with one
line naming the file and the item) or, for a file whose whole structure is wrong, in one one-line `DataError`.

The thirteen kinds: a duplicate tool name; gold arguments for a tool that declares no parameters; RoTBench-style
turns written as role/content; a role outside the format's roles; a ToolAlpaca gold with a duplicated key
(`"k": "k":`, formerly repaired); ToolAlpaca documentation that is not JSON (formerly ignored); a top-level JSON
object where a list or JSON Lines are expected (formerly read as one item); a duplicate key inside call arguments
(formerly last kept); a second system message (formerly ignored); an unparseable RoTBench gold alternative (formerly
dropped); a BFCL question with several turns (formerly all but the first dropped); a duplicate BFCL id (formerly
last answer kept); message content that is not text (formerly stringified)."""

import json
import logging
import re

import pytest
from loader_corpus import ASK, FINISH, REACT_PROMPT, TOOL, load, seed, write
from test_loader_hardening import _bad_and_good, _turns, with_tool

from tl_lightning.core.errors import DataError

FROM_VALUE = ("conversations", "rotbench", "tooleyes")
"""Formats whose tool list is the system message (the tool specs live in its text)."""


def duplicate_tool(fmt, item):
    return _append_tool(fmt, item, {**TOOL, "description": "Other."})


def _append_tool(fmt, item, spec):
    if fmt in FROM_VALUE:
        system = item["conversations"][0]
        start, end = system["value"].find("["), system["value"].rfind("]") + 1
        system["value"] = system["value"][:start] + json.dumps(json.loads(system["value"][start:end]) + [spec]) \
            + system["value"][end:]
    elif fmt == "openai":
        item["tools"].append({"type": "function", "function": spec})
    elif fmt == "bfcl":
        item["question"]["function"].append(spec)
    elif fmt == "toolbench":
        item["answer_generation"]["function"].append(spec)
    else:
        return None
    return item


def parameterless_tool_with_gold_arguments(fmt, item):
    if fmt == "toolalpaca":
        item["Function_Description"]["get_weather"] = "Weather.\nOutput: text"
        return item
    if fmt not in ("rotbench", "bfcl"):
        return None
    return with_tool(fmt, item, lambda spec: {k: v for k, v in spec.items() if k != "parameters"})


def role_content_turns(fmt, item):
    if fmt not in ("rotbench", "tooleyes"):
        return None
    item["conversations"] = [{"role": m["from"], "content": m["value"]} for m in item["conversations"]]
    return item


def foreign_role(fmt, item):
    if fmt == "conversations":
        return None  # accepts ShareGPT and OpenAI role names by design (human, gpt, observation, ...)
    if fmt == "bfcl":
        item["question"]["question"][0][0]["role"] = "human"
        return item
    turns = _turns(fmt, item)
    if turns is None:
        return None
    user = next(m for m in turns if m.get("role", m.get("from")) == "user")
    user["role" if "role" in user else "from"] = "human"
    return item


def gold_with_doubled_key(fmt, item):
    if fmt != "toolalpaca":
        return None
    item["Golden_Answers"][0][0]["Action_Input"] = '{"city": "city": "Paris"}'
    return item


def documentation_not_json(fmt, item):
    if fmt != "toolalpaca":
        return None
    item["Documentation"] = "openapi: 3.0.0\npaths: {}"
    return item


def duplicate_argument_key(fmt, item):
    args = '{"city": "Paris", "city": "Rome"}'
    if fmt == "openai":
        item["messages"][1]["tool_calls"][0]["function"]["arguments"] = args
    elif fmt == "toolbench":
        item["answer_generation"]["train_messages"][0][2]["function_call"]["arguments"] = args
    elif fmt == "toolalpaca":
        item["Golden_Answers"][0][0]["Action_Input"] = args
    else:
        return None
    return item


def second_system_message(fmt, item):
    if fmt not in FROM_VALUE:
        return None
    other = {"from": "system", "value": REACT_PROMPT.format(tools=json.dumps([{**TOOL, "name": "get_news"}]))}
    item["conversations"].insert(2, other)
    return item


def unparseable_gold_alternative(fmt, item):
    if fmt != "rotbench":
        return None
    item["conversations"][-1]["value"].append('Thought:\nAction: get_weather\nAction Input: {"city": ')
    return item


def multi_turn_question(fmt, item):
    if fmt != "bfcl":
        return None
    item["question"]["question"].append([{"role": "user", "content": "And in Rome?"}])
    return item


def content_not_text(fmt, item):
    value = {"text": "Weather in Paris?"}
    if fmt == "bfcl":
        item["question"]["question"][0][0]["content"] = value
    elif fmt == "toolalpaca":
        return None  # instructions are already required to be text
    else:
        user = next(m for m in _turns(fmt, item) if m.get("role", m.get("from")) == "user")
        user["value" if "value" in user else "content"] = value
    return item


ITEM_KINDS = {  # kind -> (make a bad item from a seed, expected skip reason: a stable name, counted as is)
    "duplicate tool name": (duplicate_tool, "duplicate tool name"),
    "gold arguments for a tool without parameters": (parameterless_tool_with_gold_arguments,
                                                     "gold passes arguments to a tool that declares no parameters"),
    "RoTBench turns written as role/content": (role_content_turns, "turn written as role/content"),
    "role outside the format's roles": (foreign_role, "role outside the format's roles"),
    "ToolAlpaca gold with a doubled key": (gold_with_doubled_key, "gold Action_Input has a duplicated key"),
    "ToolAlpaca documentation not JSON": (documentation_not_json, "Documentation is not a JSON OpenAPI document"),
    "duplicate key in call arguments": (duplicate_argument_key, "duplicate key in call arguments"),
    "second system message": (second_system_message, "more than one system message"),
    "unparseable gold alternative": (unparseable_gold_alternative, "a gold alternative is not a parseable call"),
    "BFCL question with several turns": (multi_turn_question, "question with more than one turn"),
    "message content not text": (content_not_text, "message content is not text"),
}

CASES = [(kind, fmt) for kind, (make, _) in ITEM_KINDS.items() for fmt in
         ("conversations", "openai", "rotbench", "toolalpaca", "tooleyes", "bfcl", "toolbench")
         if make(fmt, seed(fmt)) is not None]


@pytest.mark.parametrize("kind, fmt", CASES, ids=[f"{fmt}: {kind}" for kind, fmt in CASES])
def test_bad_item_is_a_named_counted_skip(kind, fmt, tmp_path, caplog):
    make, reason = ITEM_KINDS[kind]
    path, options = write(fmt, tmp_path, _bad_and_good(fmt, make(fmt, seed(fmt))))
    with caplog.at_level(logging.WARNING):
        convs, report = load(fmt, path, options)
        report.log()
    assert len(convs) == 1 and dict(report.skipped) == {reason: 1}, report.summary()
    assert f"{reason}: 1" in caplog.text  # the count reaches the log as a warning, under its name
    with pytest.raises(DataError) as e:
        load(fmt, path, options, on_error="raise")
    message = str(e.value)
    assert "\n" not in message and reason in message and re.search(r": (item \d+|line \d+|file)", message), message
    assert str(path if fmt != "bfcl" else tmp_path) in message


@pytest.mark.parametrize("fmt", ["conversations", "openai", "bfcl"])
def test_top_level_object_spanning_lines_is_a_data_error(fmt, tmp_path):
    """A pretty-printed JSON object is neither a list of items nor JSON Lines (e.g. `{"data": [...]}`): one line."""
    body = seed(fmt)["question"] if fmt == "bfcl" else seed(fmt)
    path, options = write(fmt, tmp_path, raw=json.dumps(body, indent=2).encode())
    for on_error in ("skip", "raise"):
        with pytest.raises(DataError, match="one JSON object spanning .* lines; expected a JSON list") as e:
            load(fmt, path, options, on_error=on_error)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("fmt", ["conversations", "openai", "bfcl"])
def test_one_object_on_one_line_is_json_lines(fmt, tmp_path):
    path, options = write(fmt, tmp_path, [seed(fmt)], jsonl=True)
    assert len(load(fmt, path, options)[0]) == 1


def test_duplicate_bfcl_ids(tmp_path):
    """A second question with a loaded id is skipped; an id with two possible answers cannot be scored."""
    first, again, other = seed("bfcl"), {"question": seed("bfcl")["question"]}, seed("bfcl")
    other["question"]["id"] = other["answer"]["id"] = "simple_1"
    path, options = write("bfcl", tmp_path, [first, again, other])
    convs, report = load("bfcl", path, options)
    assert [c.id for c in convs] == ["simple_0", "simple_1"] and dict(report.skipped) == {"duplicate id": 1}
    answers = tmp_path / "possible_answer" / "BFCL_v3_simple.json"
    other["answer"]["ground_truth"] = [{"get_weather": {"city": ["Rome"]}}]
    answers.write_text(answers.read_text() + "\n" + json.dumps(other["answer"]))
    convs, report = load("bfcl", path, options)
    assert [c.id for c in convs] == ["simple_0"], report.summary()
    assert dict(report.skipped) == {"duplicate id": 1, "two possible answers for this id": 1}


def test_openai_text_parts_are_joined(tmp_path):
    item = seed("openai")
    item["messages"][0]["content"] = [{"type": "text", "text": "Weather in"}, {"type": "text", "text": " Paris?"}]
    path, options = write("openai", tmp_path, [item])
    convs, _ = load("openai", path, options)
    assert convs[0].messages[0].content == "Weather in Paris?"


def test_toolalpaca_parameters_at_the_start_of_the_description(tmp_path):
    """eval_real's AirportApi_getAirport has no description: its text starts with `Parameters:`."""
    item = seed("toolalpaca")
    item["Function_Description"]["get_weather"] = 'Parameters: {"city": "Required. string. City."}\nOutput: text'
    path, options = write("toolalpaca", tmp_path, [item])
    convs, report = load("toolalpaca", path, options)
    assert convs[0].tool("get_weather").param_names == ("city",) and convs[0].tool("get_weather").description == ""


def test_tool_library_group_with_duplicate_names(tmp_path):
    """Raw ToolEyes queries of a tool group that declares a name twice are skipped under that reason."""
    library = tmp_path / "Tool_Library"
    for group, tools in (("W/Good", [TOOL, ASK, FINISH]), ("W/Dup", [TOOL, {**TOOL, "description": "Other."}])):
        (library / group).mkdir(parents=True)
        (library / group / "config_gpt4.json").write_text(json.dumps(tools))
    queries = [{"query": "Weather?", "path": f"ToolEyes/Tool_Library/{group}", "scenario": "RS"}
               for group in ("W/Good", "W/Dup")]
    path = tmp_path / "raw.json"
    path.write_text(json.dumps(queries))
    convs, report = load("tooleyes", str(path), {"tool_library": str(library)})
    assert len(convs) == 1 and dict(report.skipped) == {"tool group unusable: duplicate tool name": 1}, \
        report.summary()


def test_skip_counts_reach_the_data_source_report_also_from_the_cache(tmp_path, caplog):
    """`DataSource.load` (what SFT/RL datamodules and data_stats.json read) returns the loader's skip counts, also
    when the dataset comes from the HF cache, and logs them as a warning each time."""
    from tl_lightning.data.sources import DataSource

    bad = duplicate_tool("openai", seed("openai"))
    path, _ = write("openai", tmp_path / "data", [bad, seed("openai")], jsonl=True)
    source = DataSource(format="openai", path=path)
    for _ in range(2):  # the second load reads the cache
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            convs, report = source.load(cache_dir=str(tmp_path / "cache"))
        assert len(convs) == 1 and report.loaded == 1 and dict(report.skipped) == {"duplicate tool name": 1}
        assert "duplicate tool name: 1" in caplog.text


def test_number_of_kinds():
    kinds = set(ITEM_KINDS) | {"top-level JSON object spanning lines", "duplicate BFCL id"}
    assert len(kinds) == 13 and len(CASES) >= 25, (len(kinds), len(CASES))

