"""OpenAI chat completions ↔ our schema (pure): requests become a `Conversation` and decoding settings, replies
become OpenAI response objects; anything malformed is an `ApiError` with OpenAI's error shape and a 4xx status.

Supported: `messages` (system / developer / user / assistant with `tool_calls` / tool), `tools` (function tools),
`tool_choice` "auto" or "none", `temperature`, `top_p`, `max_tokens` / `max_completion_tokens`, `seed`, `n` 1,
`stream` (the whole reply as one chunk: the reply is parsed before anything is sent).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tl_lightning.format.call_format import ParseResult
from tl_lightning.format.schema import Conversation, Message, ToolCall, ToolSpec


class ApiError(Exception):
    """An error the client caused (or a server failure, status 500), in OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request."""

    conversation: Conversation
    parse_calls: bool  # tools offered and tool_choice not "none"
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stream: bool


def _number(body: dict, key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"'{key}' must be a number in [{low}, {high}], got {value!r}", key)
    return float(value)


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise ApiError(400, f"{where}.content must be a string or a list of text parts", f"{where}.content")


def _tool_call(call: Any, where: str) -> ToolCall:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise ApiError(400, f"{where} must be {{'type': 'function', 'function': {{'name', 'arguments'}}}}", where)
    raw = fn.get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as e:
        raise ApiError(400, f"{where}.function.arguments is not JSON: {e}", f"{where}.function.arguments") from None
    if not isinstance(args, dict):
        raise ApiError(400, f"{where}.function.arguments must be a JSON object", f"{where}.function.arguments")
    return ToolCall(fn["name"], args)


def _message(m: Any, i: int) -> Message:
    where = f"messages[{i}]"
    if not isinstance(m, dict) or "role" not in m:
        raise ApiError(400, f"{where} must be an object with a 'role'", where)
    role = {"developer": "system"}.get(m["role"], m["role"])
    if role in ("system", "user", "tool"):
        return Message(role, _text(m.get("content"), where))
    if role == "assistant":
        calls = m.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ApiError(400, f"{where}.tool_calls must be a list", f"{where}.tool_calls")
        return Message("assistant", _text(m.get("content"), where),
                       tuple(_tool_call(c, f"{where}.tool_calls[{k}]") for k, c in enumerate(calls)))
    raise ApiError(400, f"{where}.role {m['role']!r} is not one of system, developer, user, assistant, tool",
                   f"{where}.role")


def _tools(raw: Any) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ApiError(400, "'tools' must be a list of function tools", "tools")
    specs = []
    for k, t in enumerate(raw):
        if not isinstance(t, dict) or t.get("type", "function") != "function":
            raise ApiError(400, f"tools[{k}] must be {{'type': 'function', 'function': {{...}}}}", f"tools[{k}]")
        try:
            specs.append(ToolSpec.from_openai(t))
        except ValueError as e:
            raise ApiError(400, f"tools[{k}]: {e}", f"tools[{k}]") from None
    return tuple(specs)


def parse_request(body: Any, model_name: str) -> ChatRequest:
    """Validate a chat-completions request body; `ApiError` (400 / 404) on anything we do not serve."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if body.get("model") != model_name:
        raise ApiError(404, f"model {body.get('model')!r} is not served here; this server serves {model_name!r}",
                       "model", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    choice = body.get("tool_choice", "auto")
    if choice not in (None, "auto", "none"):
        raise ApiError(400, f"tool_choice {choice!r} is not supported (use 'auto' or 'none')", "tool_choice",
                       "unsupported_value")
    if body.get("n", 1) != 1:
        raise ApiError(400, "only n = 1 is supported", "n", "unsupported_value")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ApiError(400, f"'max_tokens' must be a positive integer, got {max_tokens!r}", "max_tokens")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, f"'seed' must be an integer, got {seed!r}", "seed")
    tools = _tools(body.get("tools"))
    offered = tools if choice != "none" else ()
    conv = Conversation("request", offered, tuple(_message(m, i) for i, m in enumerate(messages)), source="serve")
    return ChatRequest(conv, bool(offered), max_tokens, _number(body, "temperature", 1.0, 0.0, 2.0),
                       _number(body, "top_p", 1.0, 1e-6, 1.0), seed, bool(body.get("stream", False)))


def reply_message(text: str, parsed: ParseResult | None) -> tuple[dict, bool]:
    """The assistant message of a reply (`tool_calls` with JSON arguments when it parsed as calls, else
    `content`) and whether it holds calls."""
    if parsed is not None and parsed.ok and parsed.calls:
        calls = [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                  "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)}}
                 for c in parsed.calls]
        return {"role": "assistant", "content": None, "tool_calls": calls}, True
    return {"role": "assistant", "content": text}, False


def completion(model_name: str, message: dict, finish_reason: str, prompt_tokens: int,
               completion_tokens: int) -> dict:
    """A `chat.completion` object."""
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": model_name, "choices": [{"index": 0, "message": message, "finish_reason": finish_reason,
                                              "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def stream_chunks(done: dict) -> list[dict]:
    """A finished completion as `chat.completion.chunk`s: the message, then its finish reason."""
    message, choice = dict(done["choices"][0]["message"]), done["choices"][0]
    if message.get("tool_calls"):
        message["tool_calls"] = [{"index": k, **c} for k, c in enumerate(message["tool_calls"])]
    base = {"id": done["id"], "object": "chat.completion.chunk", "created": done["created"], "model": done["model"]}
    return [{**base, "choices": [{"index": 0, "delta": message, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}],
             "usage": done["usage"]}]


def models_list(model_name: str) -> dict:
    return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                        "owned_by": "tl-lightning"}]}
