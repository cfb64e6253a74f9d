"""The exported chat template renders the paper format token for token like `PaperFormat`, on real RoTBench and
ToolAlpaca items (with their histories: earlier calls and tool outputs) and for both tokenizer families."""

import pytest
from helpers import shared_data

from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import exported_chat_template, prompt_token_ids
from tl_lightning.format.chat_template import openai_messages
from tl_lightning.format.render import PaperFormat

SETS = [("rotbench", ("rotbench", "Data", "First_Turn", "clean.json")),
        ("rotbench", ("rotbench", "Data", "Third_Turn", "heavy.json")),
        ("toolalpaca", ("toolalpaca", "data", "eval_real.json"))]


@pytest.mark.parametrize("fmt,parts", SETS, ids=lambda x: x if isinstance(x, str) else "/".join(x[1:]))
@pytest.mark.parametrize("which", ["llama", "smollm2"])
def test_the_exported_template_renders_like_training(fmt, parts, which, tokenizer, smollm2_tokenizer):
    tok = tokenizer if which == "llama" else smollm2_tokenizer
    convs = list(load_source(fmt, shared_data(*parts)))
    template = exported_chat_template(tok)
    ours = prompt_token_ids(convs, PaperFormat(tok.eos_token), tok)
    differ = []
    for conv, want in zip(convs, ours):
        tools = [{"type": "function", "function": t.to_openai()} for t in conv.tools]
        got = tok.apply_chat_template(openai_messages(conv.messages), tools=tools, chat_template=template,
                                      add_generation_prompt=True, tokenize=True)["input_ids"]
        if list(got) != want:
            differ.append(conv.id)
    assert not differ, f"{len(differ)} of {len(convs)} differ: {differ[:5]}"
