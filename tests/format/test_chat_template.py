"""The exported chat template renders token for token like our renderers, and the exported response template
parses calls like `parse_calls`, on real RoTBench and ToolAlpaca items (with their histories: earlier calls and tool
outputs), for both tokenizer families and both prompt formats."""

import pytest
from helpers import shared_data

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import (
    exported_chat_template,
    exported_response_template,
    prompt_token_ids,
    save_tokenizer,
)
from tl_lightning.format.call_format import join_rendered, parse_calls, render_calls
from tl_lightning.format.chat_template import openai_messages
from tl_lightning.format.render import ChatTemplateFormat, PaperFormat

SETS = [("rotbench", ("rotbench", "Data", "First_Turn", "clean.json")),
        ("rotbench", ("rotbench", "Data", "Third_Turn", "heavy.json")),
        ("toolalpaca", ("toolalpaca", "data", "eval_real.json"))]
SET_IDS = ["First_Turn/clean", "Third_Turn/heavy", "eval_real"]


def _load(fmt, parts):
    return list(load_source(fmt, shared_data(*parts)))


def _tools(conv):
    return [{"type": "function", "function": t.to_openai()} for t in conv.tools]


@pytest.mark.parametrize("fmt,parts", SETS, ids=SET_IDS)
@pytest.mark.parametrize("which,prompt_format", [("llama", "paper"), ("smollm2", "paper"),
                                                 ("smollm2", "chat_template")])
def test_the_exported_template_renders_like_training(fmt, parts, which, prompt_format, tokenizer,
                                                     smollm2_tokenizer):
    tok = tokenizer if which == "llama" else smollm2_tokenizer
    convs = _load(fmt, parts)
    template = exported_chat_template(tok, prompt_format)
    renderer = PaperFormat(tok.eos_token) if prompt_format == "paper" else ChatTemplateFormat(tok)
    ours = prompt_token_ids(convs, renderer, tok)
    differ = []
    for conv, want in zip(convs, ours):
        got = tok.apply_chat_template(openai_messages(conv.messages), tools=_tools(conv), chat_template=template,
                                      add_generation_prompt=True, tokenize=True)["input_ids"]
        if list(got) != want:
            differ.append(conv.id)
    assert not differ, f"{len(differ)} of {len(convs)} differ: {differ[:5]}"


def _answers(conv):
    """Every call list of the item: the history's assistant calls and the gold answers."""
    history = [m.calls for m in conv.messages if m.role == "assistant" and m.calls]
    return [calls for calls in history + list(conv.gold or []) if calls]


@pytest.mark.parametrize("fmt,parts", SETS, ids=SET_IDS)
@pytest.mark.parametrize("prompt_format", ["paper", "chat_template"])
def test_parse_response_reads_the_calls_our_parser_reads(fmt, parts, prompt_format, smollm2_tokenizer, tmp_path):
    """Each call list rendered as the model writes it (with the turn's end marker) and parsed by transformers
    with the saved tokenizer's response template equals `parse_calls` on the same text. The known limit: strings
    with backslash escapes (transformers' JSON parser keeps text between custom quotes verbatim); those may differ,
    everything else may not, and most answers must have been compared."""
    save_tokenizer(smollm2_tokenizer, tmp_path, prompt_format)
    tok = load_tokenizer(str(tmp_path))
    end = tok.eos_token if prompt_format == "paper" else "<|im_end|>"
    prefix = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    compared, differ = 0, []
    for conv in _load(fmt, parts):
        for calls in _answers(conv):
            text = join_rendered(render_calls(calls))
            want = [(c.name, c.arguments) for c in parse_calls(text).calls]
            assert want == [(c.name, c.arguments) for c in calls]
            if "\\" in text:
                continue
            got = tok.parse_response(" " + text + end, prefix=prefix, tools=_tools(conv))
            got = [(c["function"]["name"], c["function"]["arguments"]) for c in got.get("tool_calls", [])]
            compared += 1
            if got != want:
                differ.append(text[:120])
    assert compared >= 90 and not differ, f"{len(differ)} of {compared} differ: {differ[:3]}"


@pytest.mark.parametrize("prompt_format", ["paper", "chat_template"])
def test_parse_response_returns_text_replies_as_content_and_types_values_by_the_tool_schema(prompt_format,
                                                                                          smollm2_tokenizer):
    tok = smollm2_tokenizer
    template = exported_response_template(tok, prompt_format)
    tools = [{"type": "function", "function": {"name": "set_alarm", "parameters": {"type": "object", "properties": {
        "on": {"type": "boolean"}, "note": {"type": ["string", "null"]}, "at": {"type": "integer"}}}}}]
    reply = tok.parse_response(" set_alarm(on=True, note=None, at=7, **{'re peat': ['mon', \"tue's\"]})\nlookup.x-y()",
                               template, prefix="", tools=tools)
    assert reply["tool_calls"] == [
        {"type": "function", "function": {"name": "set_alarm", "arguments": {
            "on": True, "note": None, "at": 7, "re peat": ["mon", "tue's"]}}},
        {"type": "function", "function": {"name": "lookup.x-y", "arguments": {}}}]
    assert "content" not in reply
    text = tok.parse_response(" It is sunny in Paris." + tok.eos_token, template, prefix="")
    assert text == {"role": "assistant", "content": "It is sunny in Paris."}
