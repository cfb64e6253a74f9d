"""PKT weights and key character positions: hand-computed cases from the paper's figure."""

import pytest

from tl_lightning.objectives.token_weights import divergence_index, key_char_positions, pkt_weight


@pytest.mark.parametrize("n_key, n_nonkey, w_max, expected", [
    (2, 22, 9, 9.0),   # paper figure: getPapersByKeywords(...) |NK|=22, |K|=2 -> 11, clipped to 9
    (1, 49, 9, 9.0),   # finish(answer='...long...') |NK|=49, |K|=1 -> 49, clipped to 9
    (2, 18, 9, 9.0),   # getPaperDetails(...) |NK|=18, |K|=2 -> 9
    (3, 12, 9, 4.0),   # 12/3 = 4
    (2, 1, 9, 1.0),    # 1/2 = 0.5, clipped up to 1
    (0, 5, 9, 1.0),    # no key token
])
def test_pkt_weight_hand_computed(n_key, n_nonkey, w_max, expected):
    assert pkt_weight(n_key, n_nonkey, w_max) == expected


def test_key_positions_paper_names():
    cands = ("getPaperDetails", "getPapersByKeywords", "finish")
    # getPapersByKeywords vs getPaperDetails share "getPaper" (8 chars): key chars 0 and 8 ("s")
    assert key_char_positions("getPapersByKeywords", 100, cands) == [100, 108]
    assert key_char_positions("getPaperDetails", 0, cands) == [0, 8]
    assert key_char_positions("finish", 5, cands) == [5]
    assert key_char_positions("get", 0, ("get", "get_all")) == [0, 3]  # candidate extends gold: the "(" decides


@pytest.mark.parametrize("gold, candidate, expected", [
    ([5, 6, 7, 8], [5, 6, 9, 1], 2),  # share 2 tokens: the gold's token 2 decides
    ([5, 6, 7], [5, 6, 7, 8], 2),     # the gold is a prefix of the candidate: its last token (the stop) decides
    ([5, 6, 7, 8], [4, 6, 7, 8], None),  # differ at the first token: nothing beyond the first-token key
    ([5, 6], [5, 6], None),           # identical: no divergence
])
def test_divergence_index_hand_computed(gold, candidate, expected):
    assert divergence_index(gold, candidate) == expected
