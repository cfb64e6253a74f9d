"""The OpenAI-compatible server, called with the real `openai` client on 127.0.0.1: tools in, `tool_calls` out,
a multi-turn exchange with a tool message, streaming, and OpenAI-style errors. Requests are few and bounded in
time. Generation is scripted where a test needs a known reply (rendering, parsing, HTTP and the client are real),
and real (the tiny model with `DecodeLoop`) where only the shape of the answer matters."""

import json
import threading
import urllib.error
import urllib.request

import openai
import pytest
import torch

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.format.render import make_renderer
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec
from tl_lightning.models.engine import RolloutEngine
from tl_lightning.models.generation import Generated
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.serving.server import ToolCaller, make_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "the city"}},
                   "required": ["city"]}}}
KEY = "test-key"


class ScriptedEngine(RolloutEngine):
    """Replies with `reply` (text; the stop token appended unless `stop` is False); records the prompts."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.reply, self.stop, self.prompts = tokenizer, "", True, []

    def generate(self, model, prompts, pad_id, stop_ids, settings):
        self.prompts.append(prompts[0])
        ids = self.tokenizer(self.reply, add_special_tokens=False).input_ids + ([stop_ids[0]] if self.stop else [])
        return Generated([ids[:settings.max_new_tokens]], None)


@pytest.fixture(scope="module")
def served(tiny_checkpoint):
    """(client, scripted engine, real-engine client, tokenizer, base URL) of two servers on free loopback ports."""
    tok = load_tokenizer(tiny_checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=tiny_checkpoint, quantization="nf4",
                                             compute_dtype="float32", lora=None))
    scripted = ScriptedEngine(tok)
    servers = [make_server(ToolCaller(model, tok, make_renderer("paper", tok), "tiny", 32, engine), "127.0.0.1", 0,
                           KEY) for engine in (scripted, None)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    urls = [f"http://127.0.0.1:{s.server_address[1]}/v1" for s in servers]
    clients = [openai.OpenAI(base_url=u, api_key=KEY, timeout=60, max_retries=0) for u in urls]
    yield clients[0], scripted, clients[1], tok, urls[0]
    for s in servers:
        s.shutdown()


def _rendered(tok, messages, tools=(WEATHER,)):
    conv = Conversation("request", tuple(ToolSpec.from_openai(t) for t in tools), tuple(messages))
    return prompt_token_ids([conv], make_renderer("paper", tok), tok)[0]


def test_tools_in_tool_calls_out(served):
    client, engine, _, tok, _ = served
    engine.reply, engine.stop = "get_weather(city='Paris')", True
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                         tools=[WEATHER], temperature=0)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    # the model saw exactly what training renders for these messages and tools
    assert engine.prompts[-1] == _rendered(tok, [Message("user", "Weather in Paris?")])
    assert out.usage.prompt_tokens == len(engine.prompts[-1])


def test_a_multi_turn_exchange_with_a_tool_message(served):
    client, engine, _, tok, _ = served
    engine.reply = "finish(answer='Sunny in Paris')"
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'}]
    out = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER], temperature=0)
    assert out.choices[0].message.tool_calls[0].function.name == "finish"
    history = [Message("user", "Weather in Paris?"),
               Message("assistant", calls=(ToolCall("get_weather", {"city": "Paris"}),)),
               Message("tool", '{"sky": "sunny"}')]
    assert engine.prompts[-1] == _rendered(tok, history)


def test_plain_text_stops_and_a_cut_reply_says_length(served):
    client, engine, _, _, _ = served
    engine.reply, engine.stop = "It is sunny.", True
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER])
    assert out.choices[0].finish_reason == "stop" and out.choices[0].message.content == "It is sunny."
    engine.stop = False
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 3
    # tool_choice none: no tools in the prompt, the reply is never read as a call
    engine.reply, engine.stop = "get_weather(city='Paris')", True
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER],
                                         tool_choice="none")
    assert out.choices[0].message.content == "get_weather(city='Paris')"
    assert engine.prompts[-1] == _rendered(engine.tokenizer, [Message("user", "hi")], tools=())


def test_streaming_sends_the_parsed_reply(served):
    client, engine, _, _, _ = served
    engine.reply, engine.stop = "get_weather(city='Oslo')", True
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Oslo?"}],
                                                 tools=[WEATHER], stream=True))
    calls = [c for ch in chunks for c in (ch.choices[0].delta.tool_calls or [])]
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_errors_are_openai_errors(served):
    client, engine, _, _, url = served
    user = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError, match="not served here"):
        client.chat.completions.create(model="gpt-4o", messages=user)
    bad_tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
    with pytest.raises(openai.BadRequestError, match="expected 'object'"):
        client.chat.completions.create(model="tiny", messages=user, tools=[bad_tool])
    with pytest.raises(openai.BadRequestError, match="context_length_exceeded|positions"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 3000}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="wrong", timeout=30, max_retries=0).models.list()
    request = urllib.request.Request(f"{url}/chat/completions", data=b"{not json", method="POST",
                                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    body = json.loads(e.value.read())
    assert e.value.code == 400 and "not JSON" in body["error"]["message"] and "Traceback" not in str(body)
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_the_real_engine_answers(served):
    _, _, client, _, _ = served
    torch.manual_seed(0)
    out = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Weather in Paris?"}],
                                         tools=[WEATHER], max_tokens=8, temperature=0)
    choice = out.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls") and out.usage.completion_tokens <= 8
    assert choice.message.content is not None or choice.message.tool_calls
