"""Loaders on the real shared data (counts documented in docs/data.md) and on bad-input fixtures."""

import pytest
from helpers import FIXTURES, shared_data

from tl_lightning.core.errors import DataError
from tl_lightning.data.loaders import LoadReport, as_hf_dataset, load_source
from tl_lightning.format.schema import Conversation, ToolCall


def _load(fmt, path, **kw):
    report = LoadReport(fmt, str(path))
    convs = list(load_source(fmt, path, report=report, **kw))
    return convs, report


# (file, items, skipped): the skipped items declare a tool name twice with different specs (the F1 API's `drivers`),
# so the model would see one of them only; see docs/data.md.
@pytest.mark.parametrize("turn, level, expected, skipped", [
    ("First_Turn", "clean", 105, 3), ("First_Turn", "slight", 210, 5), ("First_Turn", "medium", 210, 5),
    ("First_Turn", "heavy", 210, 6), ("First_Turn", "union", 105, 2), ("Third_Turn", "clean", 70, 3),
    ("Third_Turn", "slight", 140, 3), ("Third_Turn", "medium", 140, 4), ("Third_Turn", "heavy", 140, 6),
    ("Third_Turn", "union", 70, 1)])
def test_rotbench_every_file_loads(turn, level, expected, skipped):
    convs, report = _load("rotbench", shared_data("rotbench", "Data", turn, f"{level}.json"))
    assert len(convs) == expected - skipped and dict(report.skipped) == {"duplicate tool name": skipped}
    assert all(c.gold and c.tools[-1].name for c in convs)
    assert {c.meta["noise"] for c in convs} == {level}


def test_rotbench_content():
    convs, _ = _load("rotbench", shared_data("rotbench", "Data", "First_Turn", "clean.json"))
    c = convs[0]
    assert c.tool_names[-2:] == ("ask_to_user", "finish")
    assert c.gold[0][0] == ToolCall("get_translation_nllb", {"input_text": "See you later", "tgt_lang": "jpn_Jpan",
                                                             "src_lang": "eng_Latn", "max_length": "None"})
    assert len(c.gold) == 2 and [m.role for m in c.messages] == ["user"]
    third, _ = _load("rotbench", shared_data("rotbench", "Data", "Third_Turn", "clean.json"))
    assert any(m.role == "tool" for m in third[3].messages) and third[3].messages[1].calls


def test_rotbench_all_levels_total():
    # Load time is reported by benchmarks/data_loading.py, not asserted here.
    n = sum(len(_load("rotbench", f)[0]) for f in sorted(shared_data("rotbench", "Data").glob("*/*.json")))
    assert n == 105 + 3 * 210 + 105 + 70 + 3 * 140 + 70 - 38  # 38 items declare a tool name twice


def test_toolalpaca():
    real, r_real = _load("toolalpaca", shared_data("toolalpaca", "data", "eval_real.json"))
    # CurrencyBeacon items 4, 8, 9, 10: first-step gold `{"symbols": "symbols": ...}` (no longer repaired)
    assert len(real) == 110 and dict(r_real.skipped) == {"gold Action_Input has a duplicated key": 4}
    sim, r = _load("toolalpaca", shared_data("toolalpaca", "data", "eval_simulated.json"))
    assert len(sim) == 93 and r.total_skipped == 7  # 7 first-step golds hold template placeholders, not JSON
    # AviationAPI: 5 tools the gold calls are missing from Function_Description; recovered from its OpenAPI document
    assert r_real.notes["tool recovered from the OpenAPI document"] == 5
    aviation = next(c for c in real if c.meta["api"] == "AviationAPI")
    assert {"weather_metar_get", "preferred-routes_search_get", "getDetails"} <= set(aviation.tool_names)
    assert all(g.name in c.tool_names for c in real + sim for g in c.gold[0])  # every gold tool is offered
    c = real[4]
    assert c.gold[0][0] == ToolCall("LongWeekendLongWeekend", {"year": 2024, "countryCode": "US"})
    assert c.tool("LongWeekendLongWeekend").required == ("year", "countryCode")


def test_tooleyes_processed_raw_and_library():
    zero, r = _load("tooleyes", shared_data("tooleyes", "Test_Data", "scenario_data_zero_processed.json"))
    assert len(zero) == 377 and dict(r.skipped) == {"duplicate tool name": 5} and all(c.gold is None for c in zero)
    raw, r = _load("tooleyes", shared_data("tooleyes", "Test_Data", "scenario_data_raw.json"),
                   tool_library=shared_data("tooleyes", "Tool_Library"))
    assert len(raw) == 377 and dict(r.skipped) == {"tool group unusable: duplicate tool name": 5}
    from tl_lightning.data.loaders import load_tool_library

    report = LoadReport("tool_library", "x")
    lib = load_tool_library(shared_data("tooleyes", "Tool_Library"), report)
    # 95 groups; 3 declare a name twice (the 3 duplicates of the 568 entries) and are left out, counted
    assert len(lib) == 92 and dict(report.skipped) == {"duplicate tool name": 3}
    assert sorted(e.split("/config")[0] for e in report.examples) == [
        "Anti_Malware/Anti_Malware", "Competition/API_F1", "Food/spoonacular_products"]
    assert all(tools[-1].name == "finish" for tools in lib.values())
    assert all(len({t.name for t in c.tools}) == len(c.tools) for c in raw)


def test_toolbench_examples():
    convs, r = _load("toolbench", shared_data("toolbench", "data_example", "answer"))
    assert len(convs) == 13 and r.skipped["no train_messages"] == 2
    assert all(any(m.role == "tool" for m in c.messages) for c in convs)


def test_tl_conversations_fixture_with_bad_items():
    convs, r = _load("conversations", FIXTURES / "conversations.json")
    assert [c.id for c in convs] == ["tl-1"]
    assert r.skipped == {"assistant turn is not a parseable call (syntax)": 1, "empty conversation": 1}
    assert convs[0].messages[1].calls == (ToolCall("getPaperDetails", {"paper_id": "ICLR2024"}),)


def test_openai_fixture_with_bad_items():
    convs, r = _load("openai", FIXTURES / "openai.jsonl")
    assert [c.id for c in convs] == ["oa-1", "oa-2"]
    assert convs[0].messages[-1].content == "It is 21 degrees in Paris." and convs[1].tools[0].params == ()
    assert r.skipped["invalid JSON line"] == 1 and r.skipped["role outside the format's roles"] == 1
    assert r.skipped["tool call 'f' has non-JSON arguments"] == 1 and r.skipped["empty conversation"] == 1
    assert r.skipped["duplicate tool name"] == 1  # oa-dup


def test_bfcl_fixture_directory():
    simple, r = _load("bfcl", "simple", data_dir=FIXTURES / "bfcl")
    assert [c.id for c in simple] == ["simple_0", "simple_1"]
    assert r.skipped == {"invalid JSON line": 1, "no possible answer for this id": 1}
    assert simple[0].gold == ((ToolCall("calculate_triangle_area", {"base": 10, "height": 5, "unit": "units"}),),)
    assert simple[0].tool("calculate_triangle_area").params[0].type == "integer"
    par, _ = _load("bfcl", "parallel", data_dir=FIXTURES / "bfcl")
    assert len(par[0].gold[0]) == 2
    irr, _ = _load("bfcl", "irrelevance", data_dir=FIXTURES / "bfcl")
    assert len(irr) == 1  # not BFCL_v3_live_irrelevance.json: the category name must match exactly
    assert irr[0].gold == ((),) and irr[0].tools[0].params[0].type == "number"
    pm, _ = _load("bfcl", "parallel_multiple", data_dir=FIXTURES / "bfcl")
    assert [c.id for c in pm] == ["parallel_multiple_0"] and len(pm[0].gold[0]) == 2
    ex, _ = _load("bfcl", "exec_simple", data_dir=FIXTURES / "bfcl")
    assert ex[0].gold == ((ToolCall("calc_binomial_probability", {"n": 20, "k": 5, "p": 0.6}),),)


@pytest.mark.parametrize("call, message", [
    (lambda: list(load_source("openai", FIXTURES / "missing.jsonl")), "data path not found"),
    (lambda: list(load_source("conversations", FIXTURES / "latin1.json")), "not UTF-8"),
    (lambda: list(load_source("openai", FIXTURES / "openai.jsonl", on_error="raise")), "line 7: invalid JSON"),
    (lambda: list(load_source("conversations", FIXTURES / "conversations.json", on_error="raise")), "item 1"),
    (lambda: list(load_source("bfcl", "nonsense", data_dir=FIXTURES / "bfcl")), "unknown BFCL category"),
    (lambda: list(load_source("xml", FIXTURES)), "unknown data format"),
])
def test_bad_input_errors_are_one_line(call, message):
    with pytest.raises(DataError, match=message) as e:
        call()
    assert "\n" not in str(e.value)


def test_max_chars_skips_long_items():
    convs, r = _load("openai", FIXTURES / "openai.jsonl", max_chars=300)
    assert r.skipped["item longer than max_chars (300)"] >= 1 and all(len(c.to_json()) <= 300 for c in convs)


def test_hf_dataset_cache_round_trip(tmp_path):
    ds = as_hf_dataset("rotbench", shared_data("rotbench", "Data", "First_Turn", "clean.json"), cache_dir=str(tmp_path))
    convs = [Conversation.from_json(s) for s in ds["conversation"]]
    direct, _ = _load("rotbench", shared_data("rotbench", "Data", "First_Turn", "clean.json"))
    assert convs == direct
    again = as_hf_dataset("rotbench", shared_data("rotbench", "Data", "First_Turn", "clean.json"),
                          cache_dir=str(tmp_path))
    assert again.cache_files[0]["filename"] == ds.cache_files[0]["filename"]  # reused from the cache
