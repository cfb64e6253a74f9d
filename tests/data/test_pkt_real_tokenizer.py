"""PKT key tokens on a real pretrained tokenizer: SmolLM2-135M-Instruct's byte-level BPE (GPT-2 style, `Ġ` marks a
leading space), over the real tool lists of RoTBench and ToolAlpaca, in both prompt styles.

Pinned token by token on real items (the key tokens were read off by hand from each name's tokens and its rivals'),
and checked on every item of the files against the full-context oracle of `helpers.pkt_oracle_keys`.
"""

import pytest
from helpers import pkt_keys_vs_oracle, shared_data

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import encode_rendered
from tl_lightning.data.weighting import PKTWeighting
from tl_lightning.format.render import make_renderer
from tl_lightning.format.schema import Conversation, Message
from tl_lightning.objectives.token_weights import pkt_weight

FILES = {"rotbench": ("rotbench", "Data", "First_Turn", "clean.json"),
         "toolalpaca": ("toolalpaca", "data", "eval_real.json")}


def with_gold_call(conv: Conversation) -> Conversation:
    """The item's context followed by its first gold answer as the trained assistant turn."""
    return Conversation(conv.id, conv.tools, conv.messages + (Message("assistant", calls=conv.gold[0]),))


def item_with_gold(fmt: str, name: str) -> Conversation:
    return with_gold_call(next(c for c in load_source(fmt, shared_data(*FILES[fmt]))
                               if c.gold and c.gold[0] and c.gold[0][0].name == name))


@pytest.mark.parametrize("fmt, gold, paper, chat, rivals", [
    # rivals sharing `get _ activity _ by _`: `access` decides against key/type/price/...; the name's end, `(`,
    # against get_activity_by_accessibility_range (the gold is a token prefix of it)
    ("rotbench", "get_activity_by_accessibility", ["Ġget", "activity", "access", "("],
     ["get", "activity", "access", "("], 7),
    ("rotbench", "fake_data", ["Ġfake", "("], ["fake", "("], 2),  # vs fake_data_custom: stop after the name
    ("rotbench", "google_search", ["Ġgoogle", "search"], ["google", "search"], 3),
    ("rotbench", "predict_nationality", ["Ġpredict", "national"], ["predict", "national"], 2),
    # context matters: after "Assistant: " yahoo is `Ġy ah oo` and shares `Ġy` with yandex (`Ġy and ex`); at the
    # start of a ChatML turn it is `yah oo`, which shares no token with `y and ex`
    ("rotbench", "yahoo_image_search", ["Ġy", "ah"], ["yah"], 2),
    # getFruitsByGenus is `get F ruits ...`: the names part at `Fruit` (the character rule would pick `By`)
    ("toolalpaca", "getFruitByName", ["Ġget", "Fruit", "Name"], ["get", "Fruit", "Name"], 5),
    ("toolalpaca", "jokes_random_get", ["Ġjokes", "random", "get"], ["j", "random", "get"], 3),
    ("toolalpaca", "PublicHolidayIsTodayPublicHoliday", ["ĠPublic", "Is"], ["Public", "Is"], 3),
])
@pytest.mark.parametrize("style", ["paper", "chat_template"])
def test_key_tokens_token_by_token_on_real_items(smollm2_tokenizer, fmt, gold, paper, chat, rivals, style):
    tok = smollm2_tokenizer
    conv = item_with_gold(fmt, gold)
    assert sum(n != gold and n[:1] == gold[:1] for n in conv.tool_names) == rivals  # the item's real tool list
    rendered = make_renderer(style, tok).render(conv)
    enc = encode_rendered(rendered, tok, conv.tool_names, weighting=PKTWeighting())
    keys = [i for i, k in enumerate(enc.key_mask) if k]
    assert tok.convert_ids_to_tokens([enc.input_ids[i] for i in keys]) == (paper if style == "paper" else chat)
    trained = [i for i, label in enumerate(enc.labels) if label != IGNORE_INDEX]
    expected = pkt_weight(len(keys), len(trained) - len(keys), 9.0)  # clip(|NK| / |K|, 1, 9) over the turn
    assert [enc.weights[i] for i in trained] == pytest.approx([expected if i in keys else 1.0 for i in trained])


@pytest.mark.parametrize("fmt", FILES)
@pytest.mark.parametrize("style", ["paper", "chat_template"])
def test_key_tokens_match_the_oracle_on_every_item(smollm2_tokenizer, fmt, style):
    tok = smollm2_tokenizer
    renderer = make_renderer(style, tok)
    checked = with_rivals = 0
    for item in load_source(fmt, shared_data(*FILES[fmt])):
        if not (item.gold and item.gold[0]):
            continue
        conv = with_gold_call(item)
        got, want, seg = pkt_keys_vs_oracle(tok, renderer.render(conv), conv.tool_names)
        assert got == want, (conv.id, seg.call_names)
        checked += 1
        with_rivals += len(got) > len(seg.call_names)
    assert checked >= 100 and with_rivals >= 10
