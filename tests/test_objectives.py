"""Weighted CE and PKT: hand-computed cases, invariants, and a token-by-token label/weight test."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.constants import IGNORE_INDEX
from tl_lightning.data.mae import MAESettings, apply_mae
from tl_lightning.data.render import PaperFormat
from tl_lightning.data.schema import Conversation, Message, ToolCall, ToolSpec
from tl_lightning.data.tokenization import PKTSettings, encode_rendered
from tl_lightning.objectives.token_weights import key_char_positions, pkt_weight
from tl_lightning.objectives.weighted_ce import weighted_cross_entropy


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


def test_weighted_ce_hand_computed():
    # vocab 2, two predicted positions; logits give p(target) = 0.5 at t=0 and sigmoid(2) at t=1
    logits = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[IGNORE_INDEX, 1, 0]])
    weights = torch.tensor([[0.0, 3.0, 1.0]])
    ce0, ce1 = math.log(2), -math.log(1 / (1 + math.exp(-2)))
    expected = (3 * ce0 + 1 * ce1) / 4
    assert weighted_cross_entropy(logits, labels, weights).item() == pytest.approx(expected, rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(b=st.integers(1, 3), t=st.integers(2, 9), v=st.integers(2, 7), seed=st.integers(0, 10_000))
def test_weighted_ce_invariants(b, t, v, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[torch.rand(b, t, generator=g) < 0.3] = IGNORE_INDEX
    labels[0, -1] = 0  # at least one target
    ones = torch.ones(b, t)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    assert weighted_cross_entropy(logits, labels, ones).item() == pytest.approx(ref.item(), rel=1e-5)
    w = torch.rand(b, t, generator=g) + 0.1
    assert weighted_cross_entropy(logits, labels, 7 * w).item() == pytest.approx(
        weighted_cross_entropy(logits, labels, w).item(), rel=1e-5)  # scale-invariant
    masked = labels == IGNORE_INDEX
    w2 = w.clone()
    w2[masked] = 1000.0
    logits2 = logits.clone()
    logits2[:, :-1][masked[:, 1:]] = 50.0  # masked targets' logits and weights change nothing
    assert weighted_cross_entropy(logits2, labels, w2).item() == pytest.approx(
        weighted_cross_entropy(logits, labels, w).item(), rel=1e-5)


def test_token_by_token_labels_with_erroneous_middle_turn(tokenizer):
    tools = (ToolSpec("get_paper_details"), ToolSpec("get_papers_by_keywords"), ToolSpec("finish"))
    conv = Conversation("t", tools, (
        Message("user", "papers on tool learning"),
        Message("assistant", calls=(ToolCall("get_papers", {"query": "tool learning"}),)),
        Message("tool", "NameError: name 'get_papers' is not defined"),
        Message("assistant", calls=(ToolCall("get_papers_by_keywords", {"query": "tool learning"}),)),
        Message("tool", '{"results": [{"id": "P-1"}]}'),
        Message("assistant", calls=(ToolCall("finish", {"answer": "P-1"}),)),
    ))
    kept, blocked = apply_mae(conv, MAESettings())
    assert blocked == {1}
    rendered = PaperFormat(tokenizer.eos_token).render(kept)
    enc = encode_rendered(rendered, tokenizer, conv.tool_names, blocked, PKTSettings(), add_special_tokens=True)
    offsets = tokenizer(rendered.text, return_offsets_mapping=True)["offset_mapping"]
    text_of = [rendered.text[a:b] for a, b in offsets]
    trained = [(text_of[i], enc.weights[i], enc.key_mask[i]) for i, l in enumerate(enc.labels) if l != IGNORE_INDEX]
    # Turn 1 (blocked by MAE) contributes nothing; turns 3 and 5 are trained in full, each ending with </s>.
    assert "".join(t for t, _, _ in trained) == " get_papers_by_keywords(query='tool learning')</s> finish(answer='P-1')</s>"
    assert enc.n_blocked > 0 and "get_papers(" in rendered.text  # the erroneous call stays in the context
    first_turn = trained[: [t for t, _, _ in trained].index("</s>") + 1]
    keys = [t for t, _, k in first_turn if k]
    # get_papers_by_keywords: its first token, plus the token where it diverges from get_paper_details ("s" at char 9)
    assert keys[0].strip().startswith("get") and len(keys) >= 2
    n_key = len(keys)
    w = pkt_weight(n_key, len(first_turn) - n_key, 9.0)
    assert w > 1 and all(wt == (w if k else 1.0) for _, wt, k in first_turn)
    finish_turn = trained[len(first_turn):]
    assert [k for _, _, k in finish_turn] == [True] + [False] * (len(finish_turn) - 1)  # finish: only its first token
