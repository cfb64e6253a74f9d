"""A local OpenAI-compatible tool-calling server on the standard library's `ThreadingHTTPServer`.

Why the standard library: two routes, JSON in and out, one model that answers one request at a time (a lock
around generation): a web framework would add a dependency and an event loop and buy nothing here. It binds to
127.0.0.1 unless told otherwise.

`ToolCaller` is the model side: it renders a request with the renderer the model was trained with, generates with
the rollout engine and parses the reply with the one parser (`format.call_format`: `ast` only, never executed).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch

from tl_lightning.data.tokenization import tokenize_rendered
from tl_lightning.format.call_format import parse_calls
from tl_lightning.format.render import Renderer, stop_token_ids
from tl_lightning.models.engine import DecodeLoop, RolloutEngine
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.serving.openai_api import (
    ApiError,
    ChatRequest,
    completion,
    models_list,
    parse_request,
    reply_message,
    stream_chunks,
)

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 4 << 20


class ToolCaller:
    """A loaded model behind the chat-completions schema.

    Args:
        model: the (base + adapter, or merged) model, in eval mode.
        tokenizer: its tokenizer.
        renderer: the prompt format it was trained with.
        name: the model id clients ask for.
        max_tokens: new tokens when a request does not say.
        engine: the rollout engine (default `DecodeLoop()`).
    """

    def __init__(self, model, tokenizer, renderer: Renderer, name: str, max_tokens: int = 256,
                 engine: RolloutEngine | None = None) -> None:
        self.model, self.tokenizer, self.renderer, self.name = model, tokenizer, renderer, name
        self.max_tokens, self.engine = max_tokens, engine or DecodeLoop()
        self.stop_ids = stop_token_ids(tokenizer)
        self.positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.lock = threading.Lock()

    def complete(self, request: ChatRequest) -> dict:
        """The `chat.completion` for a validated request."""
        try:
            rendered = self.renderer.render(request.conversation, add_generation_prompt=True)
        except ValueError as e:  # a chat template that cannot render these messages
            raise ApiError(400, f"the messages cannot be rendered in the model's format: {e}", "messages") from None
        ids = list(tokenize_rendered(rendered, self.tokenizer)["input_ids"])
        new = request.max_tokens or self.max_tokens
        if self.positions and len(ids) + new > self.positions:
            raise ApiError(400, f"the prompt is {len(ids)} tokens and {new} new tokens were asked for: more than the "
                           f"model's {self.positions} positions", "messages", "context_length_exceeded")
        settings = GenerationSettings(max_new_tokens=new, do_sample=request.temperature > 0,
                                      temperature=request.temperature or 1.0, top_p=request.top_p,
                                      max_prompt_length=len(ids))
        with self.lock, torch.random.fork_rng():
            torch.manual_seed(request.seed if request.seed is not None else torch.seed())
            reply = self.engine.generate(self.model, [ids], self.tokenizer.pad_token_id, self.stop_ids,
                                         settings).responses[0]
        text = self.tokenizer.decode(reply, skip_special_tokens=True)
        message, has_calls = reply_message(text, parse_calls(text) if request.parse_calls else None)
        stopped = bool(reply) and reply[-1] in self.stop_ids
        finish = "length" if not stopped else "tool_calls" if has_calls else "stop"
        return completion(self.name, message, finish, len(ids), len(reply))


class ChatHandler(BaseHTTPRequestHandler):
    """`GET /v1/models` and `POST /v1/chat/completions` for `caller`; a bearer `api_key` is required when set.
    `make_handler` binds the two class attributes."""

    protocol_version = "HTTP/1.1"
    caller: ToolCaller
    api_key: str | None = None

    def log_message(self, fmt, *args):  # one line per request through logging, not stderr
        log.info("%s %s", self.address_string(), fmt % args)

    def do_GET(self) -> None:
        self._handle(self._models)

    def do_POST(self) -> None:
        self._handle(self._chat_completions)

    # ------------------------------------------------------------------------------------------------ routes
    def _models(self) -> None:
        self._route("/v1/models", "GET")
        self._send(200, models_list(self.caller.name))

    def _chat_completions(self) -> None:
        self._route("/v1/chat/completions", "POST")
        request = parse_request(self._json_body(), self.caller.name)
        done = self.caller.complete(request)
        self._stream(done) if request.stream else self._send(200, done)

    # ------------------------------------------------------------------------------------------------- steps
    def _handle(self, route) -> None:
        """Authorise, run the route; client errors as OpenAI errors, a server bug as one line (no traceback)."""
        try:
            if not self._authorised():
                raise ApiError(401, "invalid or missing API key (Authorization: Bearer <key>)",
                               code="invalid_api_key", kind="authentication_error")
            route()
        except ApiError as e:
            self._send(e.status, e.body())
        except Exception as e:
            log.error("request failed: %s: %s", type(e).__name__, e)
            self._send(500, ApiError(500, f"internal error: {type(e).__name__}", kind="server_error").body())

    def _route(self, path: str, method: str) -> None:
        if self.path.rstrip("/") != path:
            raise ApiError(404, f"no route {method} {self.path}", code="not_found")

    def _authorised(self) -> bool:
        if self.api_key is None:
            return True
        given = self.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode())

    def _json_body(self):
        size = int(self.headers.get("Content-Length") or 0)
        if size > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread: this connection cannot go on
            raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", code="request_too_large")
        try:
            return json.loads(self.rfile.read(size) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not JSON: {e}") from None

    def _send(self, status: int, body: dict) -> None:
        self._write(status, "application/json", json.dumps(body, ensure_ascii=False).encode())

    def _stream(self, done: dict) -> None:
        data = b"".join(f"data: {json.dumps(c, ensure_ascii=False)}\n\n".encode() for c in stream_chunks(done))
        self._write(200, "text/event-stream", data + b"data: [DONE]\n\n")

    def _write(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def make_handler(caller: ToolCaller, api_key: str | None = None) -> type[ChatHandler]:
    """The request handler class of a server for `caller`."""
    return type("BoundChatHandler", (ChatHandler,), {"caller": caller, "api_key": api_key})


def make_server(caller: ToolCaller, host: str = "127.0.0.1", port: int = 8000,
                api_key: str | None = None) -> ThreadingHTTPServer:
    """A server for `caller` (port 0: any free port; `server.server_address` says which)."""
    return ThreadingHTTPServer((host, port), make_handler(caller, api_key))
