"""PKT key tokens at token level (the reference code's rule), on a tokenizer whose pieces are written by hand and on
the tiny BPE tokenizer over real tool lists, checked against an independent full-context oracle."""

import numpy as np
import pytest
from helpers import pkt_keys_vs_oracle, shared_data

from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import encode_rendered, tokenize_rendered
from tl_lightning.data.weighting import PKTWeighting
from tl_lightning.format.render import PaperFormat
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec
from tl_lightning.objectives.token_weights import key_char_positions, tokens_at


@pytest.fixture(scope="module")
def pieces_tokenizer():
    """WordPiece with hand-written pieces: `getPaperDetails` → get P aper Details, `getPapersByKeywords` →
    get P apers By Key words (the paper figure's CodeLLaMA split), `getUser` → get User, `getUsers` → get Users."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "</s>", "get", "finish", "Assistant", "System", "User", "Function", "def", "Output", "answer",
             "##P", "##aper", "##apers", "##Details", "##By", "##Key", "##words", "##User", "##Users", "x", "ok", "()"]
    vocab = {w: i for i, w in enumerate(words + list("():='\",._-"))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>")


def _keys(tokenizer, gold: str, tools: tuple[str, ...]):
    conv = Conversation("k", tuple(ToolSpec(n) for n in tools),
                        (Message("user", "x"), Message("assistant", calls=(ToolCall(gold, {}),))))
    rendered = PaperFormat(tokenizer.eos_token).render(conv)
    enc = encode_rendered(rendered, tokenizer, conv.tool_names, weighting=PKTWeighting())
    pieces = tokenizer.convert_ids_to_tokens(enc.input_ids)
    offsets = np.asarray(tokenize_rendered(rendered, tokenizer, offsets=True)["offset_mapping"])
    seg = next(s for s in rendered.segments if s.trainable)
    char_rule = tokens_at(key_char_positions(gold, seg.name_spans[0][0], tools), offsets[:, 0], offsets[:, 1])
    return [pieces[i] for i, k in enumerate(enc.key_mask) if k], [pieces[i] for i in char_rule]


def test_paper_example_key_is_the_token_carrying_aper(pieces_tokenizer):
    tools = ("getPaperDetails", "getPapersByKeywords", "finish")
    token_rule, char_rule = _keys(pieces_tokenizer, "getPaperDetails", tools)
    assert token_rule == ["get", "##aper"]  # the paper figure: ▁get P [aper] Details
    assert char_rule == ["get", "##Details"]  # what the character-prefix rule chose (the defect)
    token_rule, _ = _keys(pieces_tokenizer, "getPapersByKeywords", ("getPaperDetails", "getPapersByKeywords"))
    assert token_rule == ["get", "##apers"]


def test_a_name_that_is_a_prefix_of_a_candidate_weights_the_token_ending_the_name(pieces_tokenizer):
    token_rule, char_rule = _keys(pieces_tokenizer, "getUser", ("getUser", "getUsers"))
    assert token_rule == ["get", "##User"] and char_rule == ["get", "()"]
    token_rule, _ = _keys(pieces_tokenizer, "finish", ("getUser", "finish"))
    assert token_rule == ["finish"]  # no candidate shares its first token


@pytest.mark.parametrize("fmt, path", [
    ("rotbench", ("rotbench", "Data", "First_Turn", "clean.json")),
    ("toolalpaca", ("toolalpaca", "data", "eval_real.json")),
    ("toolbench", ("toolbench", "data_example", "answer")),
])
def test_key_tokens_match_a_full_context_oracle_on_real_tool_lists(tokenizer, fmt, path):
    convs = list(load_source(fmt, shared_data(*path)))[:40]
    fmt_ = PaperFormat(tokenizer.eos_token)
    checked = 0
    for conv in convs:
        calls = [m for m in conv.messages if m.calls] or [Message("assistant", calls=conv.gold[0])]
        conv = Conversation(conv.id, conv.tools, tuple(m for m in conv.messages if not m.calls) + (calls[0],))
        got, want, seg = pkt_keys_vs_oracle(tokenizer, fmt_.render(conv), conv.tool_names)
        assert got == {o for o in want if o < seg.end}, (conv.id, seg.call_names)
        checked += 1
    assert checked >= 10
