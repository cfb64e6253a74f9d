"""BFCL official mode, parallel items: a call to a tool that is not the gold's must not score TS (or PI), whatever
BFCL's checker tried last. BFCL itself only says `cannot_find_match` (invalid), so CF and the verdict are BFCL's;
TS / PI come from the category. Hand-built items: no bfcl-eval needed."""

import pytest

from tl_lightning.format.schema import BfclGold, Conversation, Message, ToolCall, ToolParam, ToolSpec
from tl_lightning.metrics.scoring import score_by_mode
from tl_lightning.metrics.tool_call import item_scores

PLAY = {"name": "spotify.play", "description": "", "parameters": {"type": "dict", "required": ["artist", "duration"],
                                                                   "properties": {"artist": {"type": "string"},
                                                                                  "duration": {"type": "integer"}}}}
PAUSE = {"name": "spotify.pause", "description": "", "parameters": {"type": "dict", "required": ["artist"],
                                                                     "properties": {"artist": {"type": "string"}}}}


def _conv(functions: list[dict]) -> Conversation:
    """BFCL parallel_0: play Taylor Swift for 20 min and Maroon 5 for 15 min."""
    tools = tuple(ToolSpec(f["name"], "", tuple(ToolParam(p, t["type"]) for p, t in
                                                 f["parameters"]["properties"].items())) for f in functions)
    gold = (ToolCall("spotify.play", {"artist": "Taylor Swift", "duration": 20}),
            ToolCall("spotify.play", {"artist": "Maroon 5", "duration": 15}))
    answer = [{"spotify.play": {"artist": ["Taylor Swift"], "duration": [20]}},
              {"spotify.play": {"artist": ["Maroon 5"], "duration": [15]}}]
    return Conversation("parallel_0", tools, (Message("user", "Play ..."),), (gold,), "bfcl",
                        benchmark_gold=BfclGold("parallel", tuple(functions), tuple(answer)))


@pytest.mark.parametrize("text, category, ts", [
    # the first gold call tries the invented call (wrong_func_name), then the other one (value_error): BFCL's
    # cannot_find_match; before the fix the least severe attempt (content_filling) gave TS = PI = 1
    ("[spotify.play_v2(artist='Taylor Swift', duration=20), spotify.play(artist='Maroon 5', duration=15)]",
     "tool_hallucination", 0.0),
    ("[spotify.play(artist='Taylor Swift', duration=20), spotify.play_v2(artist='Maroon 5', duration=15)]",
     "tool_hallucination", 0.0),
    # an offered tool that is not the gold's: the wrong tool, not a wrong value
    ("[spotify.pause(artist='Taylor Swift'), spotify.play(artist='Maroon 5', duration=15)]", "wrong_tool", 0.0),
    # the right tools with a wrong value keep TS = PI = 1
    ("[spotify.play(artist='Taylor Swift', duration=21), spotify.play(artist='Maroon 5', duration=15)]",
     "content_filling", 1.0),
    ("[spotify.play(artist='Maroon 5', duration=15), spotify.play(artist='Taylor Swift', duration=20)]",
     "correct", 1.0),
])
def test_parallel_call_to_a_tool_not_in_gold_scores_no_ts(text, category, ts):
    c = score_by_mode(text, _conv([PLAY, PAUSE]), "official")[1]
    assert c.category == category, c
    scores = item_scores(c)
    assert scores["ts"] == ts and scores["pi"] == ts and scores["cf"] == float(category == "correct")
