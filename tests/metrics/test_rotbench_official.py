"""The `official` RoTBench scorer against RoTBench's own `Code/Evaluation/evaluate.py`, executed from ../shared/data
(never copied here): every item of every RoTBench file, with dozens of perturbed predictions each, must get the
same TS / PI / CF from both, item by item. Where the official script raises, its per-item result is what it had
counted before the exception (it runs ts_eval, pi_eval, cf_eval in turn)."""

import importlib.util
import json
import random
from collections import Counter

import pytest
from helpers import shared_data

from tl_lightning.data.loaders import LoadReport, load_source
from tl_lightning.format.call_format import join_rendered, render_calls
from tl_lightning.format.schema import ToolCall
from tl_lightning.metrics.rotbench_official import as_rotbench_answer, score_official
from tl_lightning.metrics.scoring import score_by_mode


@pytest.fixture(scope="module")
def official():
    path = shared_data("rotbench", "Code", "Evaluation", "evaluate.py")
    spec = importlib.util.spec_from_file_location("rotbench_official_evaluate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # `__main__` block not run; module globals cata_list / check_list set per item
    return module


def official_scores(module, answer_item: dict, prediction: str) -> tuple[bool, bool, bool]:
    module.cata_list = [[] for _ in range(7)]
    module.check_list = []
    test = [{"conversations": [{"from": "assistant", "value": prediction}]}]
    for stage in (module.ts_eval, module.pi_eval, module.cf_eval):
        try:
            stage(test, [answer_item])
        except Exception:  # the script stops here; what it counted so far stays
            break
    counted = [row[0] for row in module.check_list] + [0, 0, 0]
    return tuple(bool(x) for x in counted[:3])


def _split(answer: str) -> tuple[str, dict]:
    return answer[answer.find("Action:") + 8: answer.find("Action Input:")].rstrip("\n"), \
        json.loads(answer[answer.find("Action Input:") + 14:])


def _react(action: str, arguments, thought: str = "", sep: str = "\n", raw: str | None = None) -> str:
    return f"Thought:{thought}\nAction: {action}{sep}Action Input: " + (json.dumps(arguments) if raw is None else raw)


PER_ITEM = 24
"""Perturbed predictions per item besides its golds (a seeded sample of the ~50 kinds; about 40k in all)."""


def perturbations(item: dict, names: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """(kind, prediction) pairs: format, tool, key and value perturbations of the item's gold alternatives."""
    golds = item["conversations"][-1]["value"]
    out = [("gold", g) for g in golds]
    action, args = _split(rng.choice(golds))
    other_action, other_args = _split(rng.choice(golds))
    keys = list(args)
    j = json.dumps(args)
    out += [
        ("thought", _react(action, args, " I should call the tool. Let me do it.")),
        ("thought mentions Action:", _react(action, args, " the Action: comes next")),
        ("no space after Action:", f"Thought:\nAction:{action}\nAction Input: {j}"),
        ("two spaces after Action:", f"Thought:\nAction:  {action}\nAction Input: {j}"),
        ("space before newline", _react(action, args, sep=" \n")),
        ("blank line before input", _react(action, args, sep="\n\n")),
        ("CRLF", _react(action, args, sep="\r\n")),
        ("no space after Action Input:", f"Thought:\nAction: {action}\nAction Input:{j}"),
        ("trailing text", _react(action, args) + "\nObservation: done"),
        ("trailing blank lines", _react(action, args) + "\n\n   \n"),
        ("python dict input", _react(action, args, raw=repr(args))),
        ("empty input", _react(action, {})),
        ("list input", _react(action, [args])),
        ("values list input", _react(action, list(args.values()) or [1])),
        ("number input", _react(action, 7)),
        ("true input", _react(action, True)),
        ("null input", _react(action, None)),
        ("string input", _react(action, "text")),
        ("no Action Input", f"Thought:\nAction: {action}\n"),
        ("no Action", f"Thought: nothing\nAction Input: {j}"),
        ("empty output", ""),
        ("empty action", f"Action:\nAction Input: {j}"),
        ("prose", "I cannot handle the task."),
        ("deep nesting", _react(action, None, raw="[" * 100_000 + "]" * 100_000)),
        ("huge integer", _react(action, None, raw='{"a": ' + "7" * 5000 + "}")),
        ("NaN value", _react(action, None, raw=j[:-1] + (', ' if keys else '') + '"zz": NaN}')),
        ("duplicate key", _react(action, None, raw=j[:-1] + (f', "{keys[0]}": "dup"}}' if keys else "}"))),
        ("mixed alternatives", _react(action, other_args)),
        ("other alternative's action", _react(other_action, args)),
        ("finish", _react("finish", args)),
        ("ask_to_user", _react("ask_to_user", args)),
        ("last tool", _react(names[-1], args)),
        ("second-last tool", _react(names[-2], args)),
        ("random tool", _react(rng.choice(names), args)),
        ("hallucinated tool", _react(action + "_v2", args)),
        ("upper-case tool", _react(action.upper(), args)),
    ]
    if keys:
        k = rng.choice(keys)
        out += [
            ("drop key", _react(action, {x: v for x, v in args.items() if x != k})),
            ("extra key", _react(action, {**args, "zz_extra": "1"})),
            ("extra None key", _react(action, {**args, "zz_extra": "None"})),
            ("renamed key", _react(action, {(x.upper() if x == k else x): v for x, v in args.items()})),
            ("changed value", _react(action, {**args, k: f"{args[k]} changed"})),
            ("upper-case value", _react(action, {**args, k: str(args[k]).upper()})),
            ("numeric string", _react(action, {**args, k: "1"})),
            ("number", _react(action, {**args, k: 1})),
            ("float", _react(action, {**args, k: 1.0})),
            ("boolean", _react(action, {**args, k: True})),
            ("None value", _react(action, {**args, k: "None"})),
            ("null value", _react(action, {**args, k: None})),
            ("list value", _react(action, {**args, k: [args[k]]})),
            ("reordered keys", _react(action, dict(reversed(list(args.items()))))),
            ("ascii-escaped", f"Thought:\nAction: {action}\nAction Input: {json.dumps(args, ensure_ascii=True)}"),
            ("finish + changed value", _react("finish", {**args, k: "changed"})),
        ]
    golds_only = len(golds)
    return out[:golds_only] + rng.sample(out[golds_only:], k=min(len(out) - golds_only, PER_ITEM))


def _files():
    return sorted(shared_data("rotbench", "Data").glob("*/*.json"))


def _paired(path) -> list[tuple[dict, object]]:
    """The file's raw items paired, in file order, with the loaded conversations (ids repeat within a file, so a
    pair also needs the same gold answers). The loader skips, counted, the items that declare one tool name twice
    (38 of 1,400: F1's `drivers`), and only those."""
    items = json.loads(path.read_text(encoding="utf-8"))
    report = LoadReport("rotbench", str(path))
    convs = list(load_source("rotbench", path, report=report))
    assert len(items) - len(convs) == sum(report.skipped.values()) == report.skipped["duplicate tool name"]
    pairs, rest = [], iter(items)
    for conv in convs:
        item = next(x for x in rest if x["id"] == conv.id and x["conversations"][-1]["value"]
                    == list(conv.benchmark_gold.answers))
        pairs.append((item, conv))
    return pairs


def test_official_mode_agrees_with_evaluate_py_item_by_item(official):
    rng = random.Random(0)
    cases, disagreements, outcomes, kinds = 0, [], Counter(), Counter()
    for path in _files():
        for item, conv in _paired(path):
            names = conv.benchmark_gold.tool_names
            for kind, prediction in perturbations(item, names, rng):
                ours = score_by_mode(prediction, conv, "official")[1].scores
                mine = tuple(bool(ours[k]) for k in ("ts", "pi", "cf"))
                theirs = official_scores(official, item, prediction)
                cases += 1
                kinds[kind] += 1
                outcomes[theirs] += 1
                if mine != theirs:
                    disagreements.append((path.name, conv.id[:40], kind, mine, theirs))
    print(f"\nRoTBench official agreement: {cases - len(disagreements)}/{cases} predictions, "
          f"{len(kinds)} perturbation kinds; official (TS, PI, CF) outcomes: {dict(outcomes)}")
    assert cases > 34_000 and len(kinds) >= 50 and min(kinds.values()) > 300
    assert not disagreements, disagreements[:10]
    assert len(outcomes) >= 4  # the perturbations reach every stage: none, TS only, TS+PI, all three


def test_paper_format_output_scores_as_its_rotbench_string(official):
    """A `name(k='v')` answer is scored as the RoTBench answer string it converts to, and the gold call in the
    paper format scores as the gold string itself (except where the gold's arguments are {}: never scorable)."""
    pairs = _paired(shared_data("rotbench", "Data", "First_Turn", "clean.json"))
    cf, empty = 0, 0
    for item, conv in pairs:
        text = join_rendered(render_calls(conv.gold[0]))
        ours = score_by_mode(text, conv, "official")[1].scores
        assert tuple(bool(ours[k]) for k in ("ts", "pi", "cf")) == official_scores(official, item,
                                                                                    as_rotbench_answer(text))
        cf += bool(ours["cf"])
        empty += all(not call.arguments for answer in conv.gold for call in answer)
    # the 7 loaded items (of 102; 3 of the file's 105 declare a tool twice) whose every gold has {} arguments
    assert empty == 7 and cf == len(pairs) - empty == 95


def test_hand_computed_quirks():
    names = ["search", "ask_to_user", "finish"]
    gold = ['Thought:\nAction: search\nAction Input: {"q": "Paris", "n": "None"}',
            'Thought:\nAction: finish\nAction Input: {"answer": "x"}']

    def s(text):
        r = score_official(text, gold, names)
        return r.ts, r.pi, r.cf

    ok = 'Action: search\nAction Input: {"q": "Paris", "n": 3}'
    assert s(ok) == (True, True, True)  # a "None" gold value: key required, value free
    assert s(ok.replace("3}", "3}\nThanks")) == (False, False, False)  # text after the JSON
    assert s(ok.replace("Action: ", "Action:")) == (False, False, False)  # fixed offset eats the "s"
    assert s('Action: search\nAction Input: {"q": "paris", "n": 1}') == (True, True, False)  # case-sensitive
    assert s('Action: search\nAction Input: {"q": "Paris"}') == (True, False, False)  # "None" key still required
    assert s('Action: finish\nAction Input: {"answer": "anything"}') == (True, True, True)  # content not compared
    assert s('Action: search\nAction Input: {}') == (False, False, False)  # {} input never scores
    assert s('Action: search\nAction Input: ["Paris"]') == (True, False, False)  # script raises in PI: TS kept
    assert s("") == (False, False, False)  # script raises on the empty action: nothing counted
    renamed = ["search", "ask_to_user", "zzz"]  # heavy noise renamed the finish tool; position 3 is its role
    gold_renamed = [gold[0], 'Thought:\nAction: zzz\nAction Input: {"answer": "x"}']
    assert score_official('Action: finish\nAction Input: {"answer": "y"}', gold_renamed, renamed).cf


def test_official_category_and_summary_fields():
    path = shared_data("rotbench", "Data", "First_Turn", "clean.json")
    conv = list(load_source("rotbench", path))[0]
    call = conv.gold[0][0]
    right = join_rendered(render_calls((call,)))
    wrong_value = join_rendered(render_calls((ToolCall(call.name, {**call.arguments, "input_text": "no"}),)))
    assert score_by_mode(right, conv, "official")[1].category == "correct"
    assert score_by_mode(wrong_value, conv, "official")[1].category == "content_filling"
    assert score_by_mode("get_translation_nllb(text='x')", conv, "official")[1].category.startswith("params_")
    assert score_by_mode("nope(x=1)", conv, "official")[1].category == "tool_hallucination"
    assert score_by_mode("Action: x\nAction Input: {'a': 1}", conv, "official")[1].category == "format_error"
