"""ToolWorld determinism and error share; MAE detectors and modes; detector precision/recall on hand labels."""

import hashlib
import json
import random
from collections import Counter

import pytest
from helpers import FIXTURES, shared_data

from tl_lightning.data.loaders import load_source
from tl_lightning.data.mae import (
    AnyDetector,
    MAESettings,
    ReferenceDetector,
    RegexDetector,
    StructuredDetector,
    apply_mae,
    erroneous_turns,
)
from tl_lightning.data.toolworld import ToolWorld, execute
from tl_lightning.data.toolworld.catalog import TOOLS_BY_NAME
from tl_lightning.format.schema import ToolCall


def test_toolworld_is_deterministic_and_splits_differ():
    a, b = ToolWorld(seed=3).split("train", 50), ToolWorld(seed=3).split("train", 50)
    assert [c.to_json() for c in a] == [c.to_json() for c in b]
    val = ToolWorld(seed=3).split("val", 50)
    assert {c.messages[0].content for c in a} != {c.messages[0].content for c in val}


def test_toolworld_error_share_and_feedback():
    convs = ToolWorld(seed=0).split("train", 1500)
    errors = sum(len(c.meta["errors"]) for c in convs)
    calls = sum(1 for c in convs for m in c.messages if m.role == "assistant" and m.calls[0].name != "finish")
    gold_calls = calls - errors
    assert abs(errors / gold_calls - 0.17) < 0.03
    detector = StructuredDetector()
    for c in convs[:300]:  # every injected error is detectable from its feedback, and only those
        found = erroneous_turns(c, detector)
        assert set(found) == {e["message_index"] for e in c.meta["errors"]}
    assert ToolWorld(error_rate=0.0).split("train", 50)[0].meta["errors"] == []


def test_executor_messages():
    tools, rng = {n: TOOLS_BY_NAME[n] for n in ("get_papers_by_keywords",)}, random.Random(0)
    assert execute(ToolCall("get_paper", {}), tools, rng)[0] == "NameError: name 'get_paper' is not defined"
    assert execute(ToolCall("get_papers_by_keywords", {"venue": "ICLR"}), tools, rng)[0] == \
        "TypeError: get_papers_by_keywords() missing 1 required positional argument: 'query'"
    assert "unexpected keyword argument 'keyword'" in execute(ToolCall("get_papers_by_keywords", {"keyword": "x"}),
                                                              tools, rng)[0]
    out, err = execute(ToolCall("get_papers_by_keywords", {"query": "x", "limit": "five"}), tools, rng)
    assert err and '"error"' in out
    assert not execute(ToolCall("get_papers_by_keywords", {"query": "x", "limit": 2}), tools, rng)[1]


def test_reference_detector_quirk_and_structured_detector():
    ref, st = ReferenceDetector(), StructuredDetector()
    assert ref("All good, no errors found.").is_error  # the paper code's over-inclusive quirk
    assert not st("All good, no errors found.").is_error
    assert ref('{"status_code": 200, "error": ""}').is_error and not st('{"status_code": 200, "error": ""}').is_error
    cases = {"NameError: name 'x' is not defined": "tool_hallucination",
             "f() missing 1 required positional argument: 'query'": "missing_parameter",
             "f() got an unexpected keyword argument 'k'": "unexpected_parameter",
             '{"error": "bad date"}': "error_field", "400 Client Error: Bad Request": "http_error",
             '{"status_code": 503}': "http_error", "This operation is not supported": "not_supported",
             '{"error": "", "response": "ValueError: genre must be an integer"}': "exception"}
    for text, category in cases.items():
        assert st(text).category == category, text
    assert not st('{"temp": 21}').is_error and not st("Paris is sunny").is_error


def test_mae_modes():
    conv = next(c for c in ToolWorld(seed=1).split("train", 200) if c.meta["errors"])
    bad = conv.meta["errors"][0]["message_index"]
    counts = Counter()
    kept, blocked = apply_mae(conv, MAESettings(mode="mask"), counts)
    assert kept is conv and bad in blocked and sum(counts.values()) == len(conv.meta["errors"])
    dropped, blocked = apply_mae(conv, MAESettings(mode="drop_turn"))
    assert not blocked and len(dropped.messages) == len(conv.messages) - 2 * len(conv.meta["errors"])
    none, _ = apply_mae(conv, MAESettings(mode="drop_conversation"))
    assert none is None
    same, blocked = apply_mae(conv, MAESettings(detector=None))
    assert same is conv and not blocked
    extra, blocked = apply_mae(conv, MAESettings(detector=RegexDetector((r"TypeError|NameError|error",))))
    assert blocked
    both, blocked = apply_mae(conv, MAESettings(detector=AnyDetector((RegexDetector((r"no such marker",)),
                                                                      StructuredDetector()))))
    assert bad in blocked


def test_mae_on_rotbench_third_turn():
    convs = list(load_source("rotbench", shared_data("rotbench", "Data", "Third_Turn", "clean.json")))
    tool_msgs = sum(1 for c in convs for m in c.messages if m.role == "tool")
    ref = sum(1 for c in convs for m in c.messages if m.role == "tool" and ReferenceDetector()(m.content).is_error)
    st = sum(1 for c in convs for m in c.messages if m.role == "tool" and StructuredDetector()(m.content).is_error)
    # data.md §2.2 counts 46 of 133 outputs matching the paper's markers in the file; the loader skips the 2 items
    # that declare the tool `drivers` twice (6 outputs), leaving 41 of 127
    assert tool_msgs == 127 and ref == 41
    # ours: every one of the 53 failures in the hand labels (tests/fixtures/mae_labels.jsonl), including 17 the list
    # misses (KeyError 'da', a 401, bytes not JSON serializable, rate limits, unquoted Python messages), and none
    # of the 5 successes it flags (empty "error" fields, "errors": [], error_code 0, an abstract with "error")
    assert st == 53
    outs = [m.content for c in convs for m in c.messages if m.role == "tool"]
    assert StructuredDetector()("'da'").category == "key_error" and "'da'" in outs
    assert not StructuredDetector()('{"get": "drivers", "errors": [], "results": 0, "response": []}').is_error
    nested = '{"status_code": 200, "response": [{"status_code": 400, "error": "Invalid Domain"}]}'
    assert StructuredDetector()(nested).is_error
    assert StructuredDetector()('{"errors": [{"code": "DIS1004", "status": "404"}]}').is_error
    assert StructuredDetector()("slice indices must be integers or None or have an __index__ method").is_error


@pytest.mark.parametrize("output, category", [
    ("{'error': 'Invalid date'}", "error_field"),                   # a Python-repr dict, not JSON
    ("Invalid API call: missing query", "api_error"),
    ("Response error", "api_error"),
    ("connection error, please check the network", "http_error"),    # lower case, no class name
    ("Error: city not found", "error_line"),
    ("name weather_search is not defined", "tool_hallucination"),   # no quotes around the name
    ("Function 'translate_text' does not exist.", "tool_hallucination"),  # a runtime's unknown-tool feedback
    ('Tool "weather.search" does not exist', "tool_hallucination"),
    ("function get_news doesn't exist", "tool_hallucination"),
    ('{"message": "Function \'translate_text\' does not exist."}', "tool_hallucination"),
    ('{"error": "", "response": "{\'success\': False, \'message\': \'Tracking information not found\'}"}',
     "error_field"),                                                 # ToolBench: a Python-repr reply inside response
    ('{"message": "unknown service prime_video"}', "api_error"),   # a reply that is only an error message
    ('{"status": "failure", "code": 401, "message": "You are not authorized."}', "error_field"),
    ('{"error": "Message error...", "response": "{\'result\': [{\'type\': \'series\', \'title\': \'Bla',
     "error_field"),                                                 # ToolBench cut the reply at 1,024 characters
])
def test_structured_detector_catches_the_papers_error_forms(output, category):
    hit = StructuredDetector()(output)
    assert hit.is_error and hit.category == category, (output, hit)


@pytest.mark.parametrize("output", [
    '{"results": [{"title": "Error correction codes", "summary": "connection error rates in networks"}]}',
    "{'results': [{'title': 'Response error analysis', 'snippet': 'Invalid API call patterns'}]}",
    "Error correction is a field of coding theory; no errors were found.",
    '{"message": "Successfully synchronized watch progress."}',
    '{"message": {"type": "notice", "text": "No advice slips found matching that search term."}}',
    '{"status": "valid", "error": "", "errors": [], "error_code": 0}',
    '{"error": "", "response": ""}',
    "[]",
    "The anime with ID 12345 does not exist in this season's listing.",  # a result, not an unknown tool
    '{"results": [{"snippet": "Function \'translate_text\' does not exist in v1 of the SDK."}]}',
])
def test_structured_detector_does_not_flag_results_that_mention_errors(output):
    assert not StructuredDetector()(output).is_error, output


def _labelled_outputs():
    """The hand labels paired, in file order, with the loaded tool outputs; labels of items the loader skips
    (RoTBench items that declare one tool name twice) have no output and are left out, counted."""
    labels = [json.loads(x) for x in (FIXTURES / "mae_labels.jsonl").read_text().splitlines()]
    outputs, loaded = [], set()
    for path in dict.fromkeys(lab["file"] for lab in labels):
        fmt = "toolbench" if path.startswith("toolbench") else "rotbench"
        for c in load_source(fmt, shared_data(*path.split("/"))):
            loaded.add((path, c.id))
            outputs += [(c.id, i, m.content) for i, m in enumerate(c.messages) if m.role == "tool"]
    kept = [lab for lab in labels if (lab["file"], lab["conversation"]) in loaded]
    assert (len(labels), len(kept)) == (170, 164)  # 6 labels sit in the 2 Third_Turn items with a duplicate tool
    assert len(outputs) == len(kept)
    for lab, (cid, i, text) in zip(kept, outputs):
        assert (lab["conversation"], lab["message"]) == (cid, i)
        assert lab["sha1"] == hashlib.sha1(text.encode()).hexdigest()[:12]  # the labels still match the files
    return kept, [text for _, _, text in outputs]


@pytest.mark.parametrize("detector, expected", [
    # (true positives, false positives, false negatives) on the 164 hand-labelled outputs the loader keeps (70
    # failures; 6 labels sit in skipped items); docs/mae.md
    (ReferenceDetector(), (53, 25, 17)),
    (StructuredDetector(), (70, 0, 0)),
])
def test_precision_and_recall_on_hand_labelled_tool_outputs(detector, expected):
    labels, outputs = _labelled_outputs()
    flags = [detector(t).is_error for t in outputs]
    tp = sum(f and lab["is_error"] for f, lab in zip(flags, labels))
    fp = sum(f and not lab["is_error"] for f, lab in zip(flags, labels))
    fn = sum(lab["is_error"] and not f for f, lab in zip(flags, labels))
    assert (tp, fp, fn) == expected


def test_structured_detector_is_bounded_on_deeply_nested_replies():
    deep = "[" * 100_000 + "]" * 100_000
    assert not StructuredDetector()(deep).is_error  # neither JSON nor ast recursion escapes as an exception


def toolalpaca_returns() -> list[str]:
    """The distinct tool returns in ToolAlpaca's judge records (evalution_outputs/, simulated APIs)."""
    import re

    returns = []
    for name in ("ToolAlpaca7b.json", "ToolAlpaca13b.json"):
        records = json.loads(shared_data("toolalpaca", "evalution_outputs", name).read_text())
        for items in records.values():
            for item in items if isinstance(items, list) else ():
                if isinstance(item.get("input"), list) and item["input"]:
                    solution = item["input"][0]["content"].split("## AI Assistant's Solution", 1)[-1]
                    solution = solution.split("## Analysis", 1)[0]
                    returns += [m.group(1).strip() for m in re.finditer(
                        r"Retruns: (.*?)(?=\n\d+\. (?:Function|Final Response)|\Z)", solution, re.S)]
    return list(dict.fromkeys(returns))


def test_held_out_toolalpaca_returns():
    """100 returns labelled after the detector was written (docs/mae.md, held-out check)."""
    by_hash = {hashlib.sha1(t.encode()).hexdigest()[:12]: t for t in toolalpaca_returns()}
    labels = [json.loads(x) for x in (FIXTURES / "mae_labels_toolalpaca.jsonl").read_text().splitlines()]
    flags = [(StructuredDetector()(by_hash[lab["sha1"]]).is_error, lab["is_error"]) for lab in labels]
    assert len(flags) == 100 and sum(e for _, e in flags) == 5
    assert sum(f and e for f, e in flags) == 4 and sum(f and not e for f, e in flags) == 0
