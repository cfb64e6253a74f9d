"""Error taxonomy, IRM reward and tool-call metrics: table-driven cases, the paper's S1-S4, real RoTBench data."""

import pytest
import torch
from helpers import shared_data
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.data.loaders import load_source
from tl_lightning.format.call_format import join_rendered, parse_calls, render_calls
from tl_lightning.format.schema import Conversation, ToolCall, ToolParam, ToolSpec
from tl_lightning.metrics.tool_call import tool_call_metrics
from tl_lightning.rewards.reward import ExactMatchReward, PartialCreditReward, RewardTable, tool_call_rewards
from tl_lightning.rewards.taxonomy import CATEGORIES, GoldCall, classify, golds_for

P = ToolParam
TOOLS = (
    ToolSpec("search_flights", "", (P("origin"), P("destination"), P("date"), P("passengers", "integer",
                                                                                required=False))),
    ToolSpec("search_flight_status", "", (P("flight_number"), P("date", required=False))),
    ToolSpec("book_flight", "", (P("flight_id"), P("passenger_name"), P("seat_class", required=False))),
    ToolSpec("ask_to_user", "", (P("question"),)), ToolSpec("finish", "", (P("answer"),)),
)
G = [(GoldCall.from_call(ToolCall("search_flights", {"origin": "Paris", "destination": "Oslo", "date": "2025-01-02"})),
      )]
G_STATUS = [(GoldCall.from_call(ToolCall("search_flight_status", {"flight_number": "AF1"})),)]
G_PAX = [(GoldCall.from_call(ToolCall("search_flights", {"origin": "Paris", "destination": "Oslo", "date": "2025-01-02",
                                                          "passengers": 2})),)]
BASE = "origin='Paris', destination='Oslo', date='2025-01-02'"


def _conv(gold: list) -> Conversation:
    """A step prompt offering TOOLS whose gold answers are `gold` (plain, single-value gold calls)."""
    answers = tuple(tuple(ToolCall(g.name, {k: v[0] for k, v in g.values.items()}) for g in answer) for answer in gold)
    return Conversation("t", TOOLS, (), answers)

CASES = [
    # (prediction, gold, expected category)
    (f"search_flights({BASE})", G, "correct"),
    ("search_flights(origin=\"paris \", destination='OSLO', date='2025-01-02')", G, "correct"),
    ('Thought: ok\nAction: search_flights\n'
     'Action Input: {"origin": "Paris", "destination": "Oslo", "date": "2025-01-02"}',
     G, "correct"),
    (f"search_flights({BASE}, passengers=2.0)", G_PAX, "correct"),
    (f"search_flights({BASE.replace('Oslo', 'Lima')})", G, "content_filling"),
    (f"search_flights({BASE.replace('01-02', '01-03')})", G, "content_filling"),
    (f"search_flights({BASE}, passengers=3)", G_PAX, "content_filling"),
    (f"search_flights({BASE}, passengers=2)", G, "params_redundant"),
    ("search_flight_status(flight_number='AF1', date='2025-01-02')", G_STATUS, "params_redundant"),
    (f"search_flights({BASE}, passengers=None)", G, "params_redundant"),
    ("search_flights(origin='Paris', date='2025-01-02')", G, "params_missing"),
    ("search_flights(origin='Paris', destination='Oslo')", G, "params_missing"),
    ("search_flights(destination='Oslo')", G, "params_missing"),
    (f"search_flights({BASE}, price=100)", G, "params_hallucinated"),
    (f"search_flights({BASE}, airline='AF')", G, "params_hallucinated"),
    ("search_flight_status(flight_number='AF1', gate='B2')", G_STATUS, "params_hallucinated"),
    ("search_flights(origin='Paris', destination='Oslo', passengers=2)", G, "params_redundant_missing"),
    ("search_flights(origin='Paris', passengers=1)", G, "params_redundant_missing"),
    ("search_flight_status(date='2025-01-02')", G_STATUS, "params_redundant_missing"),
    (f"search_flights({BASE}, passengers=2, price=1)", G, "params_hallucinated_redundant"),
    ("search_flight_status(flight_number='AF1', date='x', gate='B')", G_STATUS, "params_hallucinated_redundant"),
    (f"search_flights({BASE}, passengers=2, airline='AF')", G, "params_hallucinated_redundant"),
    ("search_flights(from_city='Paris', destination='Oslo', date='2025-01-02')", G, "params_hallucinated_missing"),
    ("search_flights(origin='Paris', destination='Oslo', day='2025-01-02')", G, "params_hallucinated_missing"),
    ("search_flight_status(flight='AF1')", G_STATUS, "params_hallucinated_missing"),
    ("search_flights(from_city='Paris', destination='Oslo', date='2025-01-02', passengers=2)", G,
     "params_hallucinated_redundant_missing"),
    ("search_flight_status(flight='AF1', date='x')", G_STATUS, "params_hallucinated_redundant_missing"),
    ("search_flights(origin='Paris', passengers=2, when='now')", G, "params_hallucinated_redundant_missing"),
    ("search_flight_status(flight_number='AF1')", G, "wrong_tool"),
    ("book_flight(flight_id='F1', passenger_name='A')", G, "wrong_tool"),
    ("finish(answer='done')", G, "wrong_tool"),
    (f"search_flights({BASE})\nsearch_flights({BASE})", G, "wrong_count"),
    (f"[search_flights({BASE}), finish(answer='x')]", G, "wrong_count"),
    ("search_flights(origin='Paris')", [(GoldCall("search_flights", {"origin": ["Paris"]}),) * 2], "wrong_count"),
    (f"search_flight({BASE})", G, "tool_hallucination"),
    (f"searchFlights({BASE})", G, "tool_hallucination"),
    (f"get_flights({BASE})", G, "tool_hallucination"),
    ("", G, "no_call"),
    ("   \n ", G, "no_call"),
    ("```\n```", G, "no_call"),
    ("I think you should fly to Oslo.", G, "format_error"),
    ("search_flights(origin=Paris)", G, "format_error"),
    ("search_flights('Paris', 'Oslo')", G, "format_error"),
]


@pytest.mark.parametrize("prediction, gold, expected", CASES)
def test_classify_table(prediction, gold, expected):
    assert classify(prediction, gold, TOOLS).category == expected


def test_every_category_has_three_cases():
    from collections import Counter

    counts = Counter(c for _, _, c in CASES)
    assert all(counts[c] >= 3 for c in CATEGORIES), {c: counts[c] for c in CATEGORIES if counts[c] < 3}


# The paper's worked example (paper.md §5.1): gold get_papers_by_keywords(query='tool learning', venue='ICLR', limit=1)
PAPER_TOOLS = (ToolSpec("get_papers_by_keywords", "", (P("query"), P("venue", required=False), P("limit", "integer",
                                                                                                 required=False))),
               ToolSpec("get_paper_details", "", (P("paper_id"),)), ToolSpec("finish", "", (P("answer"),)))
PAPER_GOLD = [(GoldCall.from_call(ToolCall("get_papers_by_keywords", {"query": "tool learning", "venue": "ICLR",
                                                                      "limit": 1})),)]


@pytest.mark.parametrize("prediction, category, reward", [
    ("get_papers_by_keys(query='tool learning', venue='ICLR', limit=1)", "tool_hallucination", -2.0),        # S1
    # S2 (code; figure -0.8)
    ("get_papers_by_keywords(keyword='tool learning', venue='ICLR', limit=1)", "params_hallucinated_missing", -1.3),
    ("get_papers_by_keywords(query='learning', venue='ICLR', limit=1)", "content_filling", -0.25),           # S3
    ("get_papers_by_keywords(query='tool learning', venue='ICLR', limit=1)", "correct", 1.0),                # S4
])
def test_paper_worked_example(prediction, category, reward):
    c = classify(prediction, PAPER_GOLD, PAPER_TOOLS)
    assert c.category == category and RewardTable()(c.category) == reward
    figure = -0.8 if category == "params_hallucinated_missing" else reward
    assert RewardTable(params_hallucinated_missing=-0.8)(c.category) == figure


def test_gold_variants():
    alts = [(GoldCall.from_call(ToolCall("search_flights", {"origin": "Rome", "destination": "Oslo", "date": "x"})),),
            G[0]]
    c = classify(f"search_flights({BASE})", alts, TOOLS)
    assert c.category == "correct" and c.gold_index == 1  # best alternative wins
    bfcl = [(GoldCall.from_bfcl({"search_flights": {"origin": ["Paris"], "destination": ["Oslo", "OSL"],
                                                    "date": ["2025-01-02"],
                                                     "passengers": [1, ""]}}),)]
    assert classify(f"search_flights({BASE})", bfcl, TOOLS).category == "correct"  # "" = may be omitted
    assert classify(f"search_flights({BASE}, passengers=1)", bfcl, TOOLS).category == "correct"
    assert classify(f"search_flights({BASE}, passengers=4)", bfcl, TOOLS).category == "content_filling"
    assert classify(f"search_flights({BASE.replace('Oslo', 'OSL')})", bfcl, TOOLS).category == "correct"
    none = [(GoldCall.from_call(ToolCall("search_flights", {"origin": "Paris", "destination": "Oslo", "date": "None"})),
             )]
    assert classify("search_flights(origin='Paris', destination='Oslo', date='2026-01-01')", none,
                    TOOLS).category == "correct"
    assert classify("search_flights(origin='Paris', destination='Oslo')", none, TOOLS).category == "params_missing"
    irrelevance = [()]
    assert classify("Sorry, no tool fits.", irrelevance, TOOLS).category == "correct"
    assert classify("finish(answer='x')", irrelevance, TOOLS).category == "wrong_count"
    parallel = [(GoldCall("book_flight", {"flight_id": ["A"], "passenger_name": ["X"]}),
                 GoldCall("book_flight", {"flight_id": ["B"], "passenger_name": ["Y"]}))]
    assert classify("book_flight(flight_id='B', passenger_name='Y')\nbook_flight(flight_id='A', passenger_name='X')",
                    parallel, TOOLS).category == "correct"  # order-insensitive
    assert classify("book_flight(flight_id='B', passenger_name='X')\nbook_flight(flight_id='A', passenger_name='Y')",
                    parallel, TOOLS).category == "content_filling"


def test_reward_table_and_batch():
    table = RewardTable()
    expected = {"correct": 1.0, "format_error": -2.0, "wrong_tool": -1.5, "params_hallucinated_redundant_missing": -1.8,
                "params_redundant_missing": -1.0, "params_hallucinated": -0.8, "params_missing": -0.5,
                "content_filling": -0.25}
    assert {c: table(c) for c in expected} == expected
    preds = [f"search_flights({BASE})", "nonsense(", f"search_flight({BASE})"]
    rewards, classified = tool_call_rewards(preds, [_conv(G)] * 3)
    assert rewards == [1.0, -2.0, -2.0]
    assert [c.category for c in classified] == ["correct", "format_error", "tool_hallucination"]
    assert tool_call_rewards(preds, [_conv(G)] * 3, RewardTable(correct=5.0))[0][0] == 5.0


def _rotbench(level):
    return list(load_source("rotbench", shared_data("rotbench", "Data", "First_Turn", f"{level}.json")))


@pytest.mark.parametrize("level", ["clean", "slight", "medium", "heavy", "union"])
def test_rotbench_gold_as_prediction_scores_100(level):
    convs = _rotbench(level)
    preds = [join_rendered(render_calls(c.gold[0])) for c in convs]
    m = tool_call_metrics(preds, [golds_for(c) for c in convs], [c.tools for c in convs])
    assert m["ts"] == m["pi"] == m["cf"] == m["exact_match"] == m["arg_f1"] == m["rate/correct"] == 1.0


def _perturbed(convs, fn):
    return [join_rendered(render_calls((fn(c.gold[0][0]),) + c.gold[0][1:])) for c in convs]


def test_rotbench_perturbations_move_exactly_their_metric():
    convs = [c for c in _rotbench("clean") if c.gold[0][0].name not in ("finish", "ask_to_user")]
    golds, tools = [golds_for(c) for c in convs], [c.tools for c in convs]
    with_args = [i for i, c in enumerate(convs) if any(v != "None" for v in c.gold[0][0].arguments.values())]
    rename = tool_call_metrics(_perturbed(convs, lambda g: ToolCall(g.name + "_x", g.arguments)), golds, tools)
    assert rename["ts"] == rename["pi"] == rename["cf"] == 0.0 and rename["rate/tool_hallucination"] == 1.0
    sub = [convs[i] for i in with_args]
    sg, st_ = [golds_for(c) for c in sub], [c.tools for c in sub]
    drop = tool_call_metrics(_perturbed(sub, lambda g: ToolCall(g.name, dict(list(g.arguments.items())[1:]))), sg, st_)
    assert drop["ts"] == 1.0 and drop["pi"] == drop["cf"] == 0.0
    add = tool_call_metrics(_perturbed(sub, lambda g: ToolCall(g.name, {**g.arguments, "zz_extra": 1})), sg, st_)
    assert add["ts"] == 1.0 and add["pi"] == add["cf"] == 0.0 and add["rate/params_hallucinated"] == 1.0

    def change(g):
        k = next(k for k, v in g.arguments.items() if v != "None")
        return ToolCall(g.name, {**g.arguments, k: "completely different value"})

    val = tool_call_metrics(_perturbed(sub, change), sg, st_)
    assert val["ts"] == val["pi"] == 1.0 and val["cf"] == 0.0 and val["rate/content_filling"] == 1.0


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200) | st.sampled_from([f"search_flights({BASE})", "finish(answer=1)", "[a(), b()]"]))
def test_classify_is_total_and_deterministic(text):
    a, b = classify(text, G, TOOLS), classify(text, G, TOOLS)
    assert a.category in CATEGORIES and a == b
    assert torch.isfinite(torch.tensor(RewardTable()(a.category)))


@pytest.mark.parametrize("prediction, gold, lenient, paper", [
    # a right call followed by prose: the whole output is not a call, but its first call is right
    (f"search_flights({BASE})\nI searched the flights for you.", G, "format_error", "correct"),
    # two calls where one is asked: the paper reads the first only
    (f"search_flights({BASE})\nfinish(answer='x')", G, "wrong_count", "correct"),
    # values: lenient normalises case, whitespace and numeric strings; the paper compares them as given
    ("search_flights(origin='paris', destination='Oslo', date='2025-01-02')", G, "correct", "content_filling"),
    # the paper reads string values only: '2' is a key the gold (passengers=2, unquoted) does not have
    (f"search_flights({BASE}, passengers='2')", G_PAX, "correct", "params_redundant"),
    (f"search_flights({BASE}, passengers=2.0)", G_PAX, "correct", "correct"),
    (f"search_flights({BASE}, passengers=3)", G_PAX, "content_filling", "correct"),  # unquoted: not compared
    # free-text tools: lenient does not compare their content (RoTBench), the paper's reward does
    ("finish(answer='wrong answer')", [(GoldCall.from_call(ToolCall("finish", {"answer": "Oslo"})),)], "correct",
     "content_filling"),
])
def test_paper_convention_reads_the_first_call_and_compares_values_as_given(prediction, gold, lenient, paper):
    assert classify(prediction, gold, TOOLS).category == lenient
    assert classify(prediction, gold, TOOLS, convention="paper").category == paper
    assert tool_call_rewards([prediction], [_conv(gold)])[0] == [RewardTable()(paper)]  # the reward's default


# The reference reward reads only `key='string'` pairs (paper.md §5.2): unquoted values and their keys are invisible.
# Expected rewards hand-computed from `test_answer_for_reward` (code/irm/dschat/rlhf/ppo_trainer.py).
@pytest.mark.parametrize("prediction, category, reward", [
    ("get_papers_by_keywords(query='tool learning', venue='ICLR', limit=2)", "correct", 1.0),  # issue #24 item 11
    ("get_papers_by_keywords(query='tool learning', venue='ICLR')", "correct", 1.0),  # limit=1 is not read
    ("get_papers_by_keywords(query='tool learning', venue='ICLR', limit=True, pages=[1, 2])", "correct", 1.0),
    ("get_papers_by_keywords(query='tool learning', venue='ICLR', limit='1')", "params_redundant", -0.5),
    ("get_papers_by_keywords(query='tool learning', venue='ICLR', pages='1')", "params_hallucinated", -0.8),
    ("get_papers_by_keywords(query='tool learning', limit=1)", "params_missing", -0.5),
    ("get_papers_by_keywords(query='tool', venue='ICLR', limit=1)", "content_filling", -0.25),
    ("get_papers_by_keywords(query='tool learning', venue='iclr', limit=1)", "content_filling", -0.25),
])
def test_paper_convention_compares_string_values_only_as_the_reference_reward(prediction, category, reward):
    c = classify(prediction, PAPER_GOLD, PAPER_TOOLS, convention="paper")
    assert c.category == category and RewardTable()(c.category) == reward


def test_paper_convention_scores_every_rotbench_gold_as_correct():
    convs = _rotbench("clean")
    for c in convs:
        text = join_rendered(render_calls(c.gold[0])) + "\nThat is my answer."
        assert classify(text, golds_for(c), c.tools, convention="paper").category == "correct", c.id


def _classified(pred: str, gold_call: str, convention="lenient"):
    gold = [tuple(GoldCall.from_call(c) for c in parse_calls(gold_call).calls)]
    return classify(pred, gold, TOOLS, convention=convention)


def test_exact_match_reward_is_one_only_for_a_right_answer():
    reward = ExactMatchReward()
    gold = "search_flights(origin='PAR', destination='NYC', date='2024-05-01')"
    assert reward.score(_classified(gold, gold)) == 1.0
    assert reward.score(_classified(gold.replace("NYC", "LAX"), gold)) == 0.0  # content_filling
    assert reward.score(_classified("nonsense(", gold)) == 0.0
    assert ExactMatchReward(correct=2.0, incorrect=-1.0).score(_classified("", gold)) == -1.0


def test_partial_credit_reward_by_hand():
    """Gold search_flights(origin, destination, date). A prediction with the right name, keys {origin,
    destination, x} against {origin, destination, date}: Jaccard 2/4; values right for origin only: 1/3.
    1 + 2/4 + 1/3 = 1.8333. Lenient reads 'par' as 'PAR'; paper (exact) does not: 1 + 2/4 + 0 = 1.5."""
    reward = PartialCreditReward()
    gold = "search_flights(origin='PAR', destination='NYC', date='2024-05-01')"
    pred = "search_flights(origin='par', destination='LAX', x=1)"
    assert reward.score(_classified(pred, gold), "lenient") == pytest.approx(1 + 2 / 4 + 1 / 3)
    assert reward.score(_classified(pred, gold, "paper"), "paper") == pytest.approx(1 + 2 / 4 + 0)
    assert reward.score(_classified(gold, gold)) == 3.0
    assert reward.score(_classified("book_flight(flight_id='A', passenger_name='X')", gold)) == 0.0  # wrong tool
    assert reward.score(_classified("nonsense(", gold)) == -1.0
    assert reward.score(_classified(f"{gold}\n{gold}", gold)) == 0.0  # wrong count: no pairs
    weighted = PartialCreditReward(name=0.5, keys=0.25, values=0.25, unparsed=-3.0)
    assert weighted.score(_classified(pred, gold), "lenient") == pytest.approx(0.5 + 0.25 * 2 / 4 + 0.25 / 3)
    assert weighted.score(_classified("", gold)) == -3.0  # no call
