"""Every loader on a corpus of bad inputs: each class ends in one clear `DataError` (whole-file problems) or a counted
skip with its reason (item problems, while the good item beside it loads), never another exception. The fuzz test
(test_loader_fuzz.py) explores beyond these classes."""

import copy
import json
import re

import pytest
from loader_corpus import FORMATS, JSONL_FORMATS, TOOL, load, seed, write

from tl_lightning.core.errors import DataError
from tl_lightning.format.call_format import parse_calls

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a": ' * 100_000 + "1" + "}" * 100_000
TOOL_FORMATS = ("conversations", "openai", "rotbench", "tooleyes", "bfcl", "toolbench")


def _system_tools(item, key="conversations"):
    return item[key][0]


def with_tool(fmt: str, item, change):
    """`item` with its first tool spec replaced by change(spec) (None: the format has no JSON schemas)."""
    item = copy.deepcopy(item)
    if fmt in ("conversations", "rotbench", "tooleyes"):
        system = item["conversations"][0]
        start, end = system["value"].find("["), system["value"].rfind("]") + 1
        tools = json.loads(system["value"][start:end])
        tools[0] = change(tools[0])
        system["value"] = system["value"][:start] + json.dumps(tools) + system["value"][end:]
    elif fmt == "openai":
        item["tools"][0]["function"] = change(item["tools"][0]["function"])
    elif fmt == "bfcl":
        item["question"]["function"][0] = change(item["question"]["function"][0])
    elif fmt == "toolbench":
        item["answer_generation"]["function"][0] = change(item["answer_generation"]["function"][0])
    else:
        return None
    return item


def _params(**changes):
    return lambda spec: {**spec, "parameters": {**spec["parameters"], **changes}}


TOOL_SCHEMA = {  # class -> (change of the first tool spec, expected skip reason)
    "parameters is a list": (lambda s: {**s, "parameters": [1]}, "expected an object schema"),
    "parameters of type string": (_params(type="string"), "expected 'object'"),
    "properties is a list": (_params(properties=["city"]), "properties is not an object"),
    "parameter schema is text": (_params(properties={"city": "a string"}), "schema that is not an object"),
    "unknown parameter type": (_params(properties={"city": {"type": "sdfs"}}), "unknown type 'sdfs'"),
    "required is text": (_params(required="city"), "required is not a list"),
    "required names an undeclared parameter": (_params(required=["city", "zip"]), "undeclared parameter"),
    "tool name injects a def": (lambda s: {**s, "name": "x(a): pass\ndef y"}, "not a callable name"),
    "tool name is a keyword": (lambda s: {**s, "name": "import"}, "not a callable name"),
}


def _turns(fmt, item):
    """(the item's message list, the index of its first assistant call) for formats with turns."""
    if fmt in ("conversations", "tooleyes", "rotbench"):
        return item["conversations"]
    if fmt == "openai":
        return item["messages"]
    if fmt == "toolbench":
        return item["answer_generation"]["train_messages"][0]
    return None


def tool_before_call(fmt, item):
    turns = _turns(fmt, item)
    if turns is None:
        return None
    key = "from" if fmt in ("conversations", "tooleyes", "rotbench") else "role"
    turns.insert(2 if fmt == "toolbench" else 1, {key: "tool" if fmt == "openai" else "function", "value": "42",
                                                 "content": "42"})
    return item


def unknown_call_id(fmt, item):
    if fmt != "openai":
        return None
    item["messages"][2]["tool_call_id"] = "call_zz"
    return item


def nested_arguments(fmt, item):
    if fmt == "openai":
        item["messages"][1]["tool_calls"][0]["function"]["arguments"] = DEEP
    elif fmt == "toolbench":
        item["answer_generation"]["train_messages"][0][2]["function_call"]["arguments"] = DEEP
    else:
        return None
    return item


def arguments_not_object(fmt, item):
    if fmt == "openai":
        item["messages"][1]["tool_calls"][0]["function"]["arguments"] = "[1, 2]"
    elif fmt == "toolbench":
        item["answer_generation"]["train_messages"][0][2]["function_call"]["arguments"] = "[1, 2]"
    else:
        return None
    return item


def gold_not_offered(fmt, item):
    if fmt == "rotbench":
        item["conversations"][-1]["value"] = ['Thought:\nAction: get_news\nAction Input: {"q": "x"}']
    elif fmt == "toolalpaca":
        item["Golden_Answers"][0][0]["Action"] = "get_news"
    elif fmt == "bfcl":
        item["answer"]["ground_truth"] = [{"get_news": {"q": ["x"]}}]
    else:
        return None
    return item


def empty_action_input(fmt, item):
    if fmt == "rotbench":
        item["conversations"][-1]["value"] = ["Thought:\nAction: get_weather\nAction Input: "]
    elif fmt == "toolalpaca":
        item["Golden_Answers"][0][0]["Action_Input"] = ""
    elif fmt == "conversations":
        item["conversations"][2]["value"] = "Thought: x\nAction: get_weather\nAction Input:"
    else:
        return None
    return item


def mismatched_counts(fmt, item):
    if fmt != "toolalpaca":
        return None
    item["Instructions"].append("And tomorrow?")
    return item


def lone_surrogate(fmt, item):
    text = "Weather in \ud800 Paris?"
    if fmt == "bfcl":
        item["question"]["question"][0][0]["content"] = text
    elif fmt == "toolalpaca":
        item["Instructions"][0] = text
    else:
        user = next(m for m in _turns(fmt, item) if m.get("role", m.get("from")) == "user")
        user["value" if "value" in user else "content"] = text
    return item


def bad_possible_answer(fmt, item):
    if fmt != "bfcl":
        return None
    item["answer"]["ground_truth"] = {"get_weather": "Paris"}
    return item


def not_an_object(fmt, item):
    return None if fmt in ("bfcl", "toolbench") else 42


ITEM_CLASSES = {  # class -> (make a bad item from a seed, expected skip reason)
    **{name: ((lambda change: lambda fmt, item: with_tool(fmt, item, change))(change), reason)
       for name, (change, reason) in TOOL_SCHEMA.items()},
    "tool output before any call": (tool_before_call, "tool output before any tool call"),
    "tool result for an unknown call id": (unknown_call_id, "unknown call id"),
    "arguments nested 100,000 deep": (nested_arguments, "nested too deeply"),
    "arguments not an object": (arguments_not_object, "arguments are not an object"),
    "gold calls a tool not on offer": (gold_not_offered, "not offered"),
    "empty ReAct Action Input": (empty_action_input, "no parseable gold|Action_Input is empty|empty_action_input"),
    "ToolAlpaca instruction / answer counts differ": (mismatched_counts, "Instructions but"),
    "lone surrogate": (lone_surrogate, "invalid Unicode"),
    "possible answer of the wrong shape": (bad_possible_answer, "possible answer is not a list"),
    "item is not an object": (not_an_object, "malformed item|not an object|empty conversation"),
}

FILE_CLASSES = {  # class -> (raw file bytes, expected DataError message)
    "zero-byte file": (b"", "the file is empty"),
    "whitespace-only file": (b"  \n\n ", "the file is empty"),
    "latin-1 bytes": ('[{"id": "caf\u00e9"}]'.encode("latin-1"), "not UTF-8"),
    "UTF-16 file": ('[{"id": "x"}]'.encode("utf-16"), "not UTF-8"),
    "truncated JSON": (b'[{"id": "x", "conversations": [', "invalid JSON|no usable items"),
    "document nested 100,000 deep": (DEEP.encode(), "nested too deeply|no usable items"),
    "integer beyond the int-size limit": (b"[" + b"7" * 5000 + b"]", "invalid JSON|no usable items"),
    "empty list": (b"[]", "no usable items"),
    "every item fails": (b"[1, 2, 3]", "no usable items .*skipped [13]"),
    "a bare string": (b'"conversations"', "no usable items|expected a list"),
}

CASES = [(name, fmt) for name, (make, _) in ITEM_CLASSES.items() for fmt in FORMATS
         if make(fmt, seed(fmt)) is not None]


def _bad_and_good(fmt, bad):
    good = seed(fmt)
    if fmt == "bfcl":
        bad["question"]["id"] = bad.get("answer", {}).get("id", "simple_0") if isinstance(bad.get("answer"), dict) \
            else "simple_0"
        good["question"]["id"] = good["answer"]["id"] = "simple_1"
    return [bad, good]


@pytest.mark.parametrize("name, fmt", CASES, ids=[f"{fmt}: {name}" for name, fmt in CASES])
def test_bad_item_is_a_counted_skip(name, fmt, tmp_path):
    make, reason = ITEM_CLASSES[name]
    path, options = write(fmt, tmp_path, _bad_and_good(fmt, make(fmt, seed(fmt))))
    convs, report = load(fmt, path, options)
    assert len(convs) == 1 and report.total_skipped == 1, report.summary()
    assert any(re.search(reason, r) for r in report.skipped), report.summary()
    with pytest.raises(DataError) as e:
        load(fmt, path, options, on_error="raise")
    assert "\n" not in str(e.value)


FILE_CASES = [(name, fmt) for name in FILE_CLASSES for fmt in FORMATS]


@pytest.mark.parametrize("name, fmt", FILE_CASES, ids=[f"{fmt}: {name}" for name, fmt in FILE_CASES])
def test_bad_file_is_one_data_error(name, fmt, tmp_path):
    raw, message = FILE_CLASSES[name]
    path, options = write(fmt, tmp_path, raw=raw)
    with pytest.raises(DataError) as e:
        load(fmt, path, options)
    assert re.search(message, str(e.value)) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(DataError) as e:  # "raise" may stop earlier, at the first bad item, naming it
        load(fmt, path, options, on_error="raise")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fmt", JSONL_FORMATS)
def test_deeply_nested_jsonl_line_is_a_counted_skip(fmt, tmp_path):
    good = seed(fmt)
    path = tmp_path / "data.jsonl"
    if fmt == "bfcl":
        path, options = write(fmt, tmp_path, [good])
        question = (tmp_path / "BFCL_v3_simple.json")
        question.write_text(DEEP_OBJECT + "\n" + question.read_text())
    else:
        path.write_text(DEEP_OBJECT + "\n" + json.dumps(good) + "\n")
        path, options = str(path), {}
    convs, report = load(fmt, path, options)
    assert len(convs) == 1 and report.skipped == {"invalid JSON line (nested too deeply)": 1}


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError, match="data path not found"):
        load("openai", str(tmp_path / "nope.jsonl"), {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable items"):
        load("toolbench", str(tmp_path / "empty"), {})


def test_pretty_printed_single_object_is_a_data_error(tmp_path):
    """Neither a list of items nor JSON Lines (it used to be read as one item; test_loader_strictness.py)."""
    path = tmp_path / "one.json"
    path.write_text(json.dumps(seed("openai"), indent=2))
    with pytest.raises(DataError, match="one JSON object spanning"):
        load("openai", str(path), {})


def test_empty_react_action_input_is_a_typed_parse_failure():
    for text in ("Action: get_weather\nAction Input:", "Thought: x\nAction: get_weather\nAction Input:  \n",
                 "Action: get_weather"):
        result = parse_calls(text)
        assert not result.ok and result.failure.kind == "empty_action_input", text
    assert parse_calls("Action: get_weather\nAction Input: {}").calls[0].arguments == {}


def test_tool_library_file_failures_are_counted(tmp_path):
    from tl_lightning.data.loaders import LoadReport, load_tool_library

    for group, content in (("A/Good", json.dumps([TOOL])), ("A/Empty", ""), ("A/Deep", DEEP),
                           ("A/BadSchema", json.dumps([{**TOOL, "parameters": [1]}]))):
        (tmp_path / group).mkdir(parents=True)
        (tmp_path / group / "config_gpt4.json").write_text(content)
    report = LoadReport("tool_library", str(tmp_path))
    library = load_tool_library(tmp_path, report)
    assert list(library) == ["A/Good"] and report.total_skipped == 3, report.summary()


def test_number_of_bad_input_classes():
    classes = set(ITEM_CLASSES) | set(FILE_CLASSES) | {"deeply nested JSONL line", "missing path",
                                                        "folder without data files", "empty tool-library file"}
    print(f"\n{len(classes)} bad-input classes, {len(CASES) + len(FILE_CASES)} (class, format) cases")
    assert len(classes) >= 30
