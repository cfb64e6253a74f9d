"""Renderers: conversation → text + per-segment character spans.

Two prompt styles share one output type, `Rendered`:

* `PaperFormat` — the TL-Training CodeLLaMA format (paper.md §3.3, §4.4; documented in docs/format.md):

      System: Function:
      def name(p: string, q: integer = None):
          \"\"\"description

          Args:
              p (string): ...
              q (integer): ...
          \"\"\"

      Function:
      def finish(answer: string):
      ...
      User: <query>
      Assistant: name(p='v', q=1)</s>
      Output: <tool output>
      Assistant: finish(answer='...')</s>

  One deviation from the paper code, on purpose: every assistant turn ends with the EOS token, not only the last.
  We train all turns of a conversation in one pass, so each turn must learn to stop (the paper code makes one
  copy per turn and trains only the last reply, O(n²) tokens).

* `ChatTemplateFormat` — the tokenizer's own chat template with `tools=`, for other model families (Qwen, Llama-3,
  ...). Assistant turns carry the call text of `call_format` as content, so parsing stays in one place.

Later stages map these spans to tokens through the tokenizer's offset mapping (`tokenization.py`); nothing ever
searches decoded text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from tl_lightning.core.errors import UserError
from tl_lightning.format.call_format import Span, join_rendered, plain_name, render_calls
from tl_lightning.format.schema import Conversation, Message, ToolSpec

ROLE_HEADERS = {"system": "System", "user": "User", "assistant": "Assistant", "tool": "Output"}


@dataclass(frozen=True)
class Segment:
    """A span of rendered text. `message_index` points into `Conversation.messages` (-1: tool block / headers).

    For assistant bodies, `call_names`, `name_spans` (absolute char spans of each call's tool name) and `arg_spans`
    (absolute `(key, value)` spans of every argument of every call) locate the parts PKT weights.
    """

    role: str
    message_index: int
    start: int
    end: int
    trainable: bool
    call_names: tuple[str, ...] = ()
    name_spans: tuple[Span, ...] = ()
    arg_spans: tuple[tuple[Span, Span], ...] = ()


@dataclass(frozen=True)
class Rendered:
    """Rendered text and its segments (in order, covering `text` without gaps).

    `add_special_tokens` is the renderer's BOS policy, which every tokenization of `text` must follow: the paper
    format's text has no BOS, so the tokenizer adds it; a chat template writes its own special tokens.
    """

    text: str
    segments: tuple[Segment, ...]
    add_special_tokens: bool = True

    @property
    def prompt_end(self) -> int:
        """End of the text before the first trainable segment (the whole text if none)."""
        return next((s.start for s in self.segments if s.trainable), len(self.text))


class Renderer(Protocol):
    """Conversation → `Rendered`; `add_generation_prompt` ends the text where the next assistant turn begins."""

    def render(self, conv: Conversation, messages: tuple[Message, ...] | None = None,
               add_generation_prompt: bool = False) -> Rendered: ...


def render_tool_def(tool: ToolSpec) -> str:
    """The paper's pseudo-Python definition of a tool (required parameters first, optional ones `= None`)."""
    sig = ", ".join(f"{_param_label(p.name)}: {p.type}" + ("" if p.required else " = None") for p in tool.params)
    lines = ["Function:", f"def {tool.name}({sig}):", f'    """{_one_line(tool.description)}']
    if tool.params:
        lines += ["", "    Args:"]
        lines += [f"        {_param_label(p.name)} ({p.type}): {_one_line(p.description)}" for p in tool.params]
    lines.append('    """')
    return "\n".join(lines)


def _param_label(name: str) -> str:
    # A name that is not a plain identifier (RoTBench's "code:", "return_err=False", the keyword "from", or a
    # hostile "x): ...") is written as a quoted literal, as calls write it (`**{'code:': ...}`): one token that
    # cannot change the signature around it.
    return name if plain_name(name) else repr(name)


def _one_line(text: str) -> str:
    # Descriptions with newlines or triple quotes would break the docstring block the model reads.
    return " ".join(text.replace('"""', "'''").split())


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.segments: list[Segment] = []
        self.pos = 0

    def add(self, text: str, role: str, message_index: int, trainable: bool, **extra: Any) -> int:
        start = self.pos
        self.parts.append(text)
        self.pos += len(text)
        if text:
            self.segments.append(Segment(role, message_index, start, self.pos, trainable, **extra))
        return start

    def build(self, add_special_tokens: bool) -> Rendered:
        return Rendered("".join(self.parts), tuple(self.segments), add_special_tokens)


@dataclass(frozen=True)
class PaperFormat:
    """The TL-Training CodeLLaMA prompt format.

    Args:
        eos_token: appended (and trained) after every assistant turn; use the tokenizer's `eos_token`.
    """

    eos_token: str = "</s>"

    def render(self, conv: Conversation, messages: tuple[Message, ...] | None = None,
               add_generation_prompt: bool = False) -> Rendered:
        """Render `messages` (default: all of `conv.messages`) with `conv.tools` as the system block.

        `add_generation_prompt` ends the text with the assistant header, ready for generation.
        """
        messages = conv.messages if messages is None else messages
        b = _Builder()
        system_extra = "\n".join(m.content for m in messages if m.role == "system" and m.content)
        system = "\n\n".join(render_tool_def(t) for t in conv.tools)
        if system_extra:
            system = f"{system}\n\n{system_extra}" if system else system_extra
        b.add(f"System: {system}", "system", -1, False)
        for i, msg in enumerate(messages):
            if msg.role == "system":
                continue
            header = f"\n{ROLE_HEADERS[msg.role]}:"
            if msg.role != "assistant":
                b.add(f"{header} {msg.content}", msg.role, i, False)
                continue
            b.add(header, "header", i, False)
            self._add_assistant_body(b, msg, i)
        if add_generation_prompt:
            b.add("\nAssistant:", "header", len(messages), False)
        return b.build(add_special_tokens=True)  # the text has no BOS: the tokenizer adds it

    def _add_assistant_body(self, b: _Builder, msg: Message, index: int) -> None:
        rendered = render_calls(msg.calls)
        body = " " + (join_rendered(rendered) if msg.calls else msg.content)
        start = b.pos + 1  # after the leading space
        names = tuple(c.name for c in msg.calls)
        name_spans = tuple((start + off + rc.name[0], start + off + rc.name[1]) for off, rc in rendered)
        arg_spans = tuple(((start + off + k[0], start + off + k[1]), (start + off + v[0], start + off + v[1]))
                          for off, rc in rendered for k, v in rc.args)
        b.add(body + self.eos_token, "assistant", index, True,
              call_names=names, name_spans=name_spans, arg_spans=arg_spans)


TOOLS_INSTRUCTION = ("You can call the following tools. Call one by replying with the call only, written like a "
                     "Python call with keyword arguments: name(argument='value').")
"""First line of the tool block a `ChatTemplateFormat` writes into the system message when the template has no
tools block of its own (docs/format.md)."""
_PROBE_TOOL = "tl_lightning_probe_tool"


def tool_system_block(tools: tuple[ToolSpec, ...]) -> str:
    """The tool list as system-message text: `TOOLS_INSTRUCTION`, then one OpenAI function spec (JSON) per line
    between `<tools>` and `</tools>` (the layout of Hermes / Qwen-style templates that do render `tools=`)."""
    specs = "\n".join(json.dumps(t.to_openai(), ensure_ascii=False) for t in tools)
    return f"{TOOLS_INSTRUCTION}\n<tools>\n{specs}\n</tools>"


def template_renders_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template writes the `tools=` it is given into the text (SmolLM2's ChatML and
    the LLaMA-2 template do not): a probe tool's name must appear in the rendered text."""
    probe = [{"type": "function", "function": ToolSpec(_PROBE_TOOL, "probe").to_openai()}]
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tools=probe, tokenize=False)
    return _PROBE_TOOL in text


_PROBE_REPLY = "tl_lightning_probe_reply"


def end_of_turn_token(tokenizer) -> int | None:
    """The special token a chat template ends an assistant turn with: generation must stop on it. None when the
    tokenizer has no chat template. A `ValueError` when the template ends the turn otherwise (plain text, or
    nothing): a model trained on that template would never emit a token to stop at."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE_REPLY}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    tail = text[text.index(_PROBE_REPLY) + len(_PROBE_REPLY):]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    ids = tokenizer(tail, add_special_tokens=False).input_ids
    for k, i in enumerate(ids):
        if i in special:
            if tokenizer.decode(ids[:k]).strip():
                break  # text before the special token: the turn does not end with it
            return i
    raise ValueError(f"the chat template ends an assistant turn with {tail[:40]!r}, not with a special token: "
                     "generation could not stop at the end of a turn; use prompt_format: paper or another template")


def stop_token_ids(tokenizer) -> tuple[int, ...]:
    """The tokens generation stops at: EOS, and the chat template's end-of-turn token when it has one (Llama-3
    style templates end a turn with `<|eot_id|>`, not EOS; paper-format turns end with EOS)."""
    try:
        end = end_of_turn_token(tokenizer)
    except ValueError:
        end = None  # no usable end-of-turn token: EOS only (a chat_template datamodule refuses such a template)
    return tuple(dict.fromkeys(i for i in (tokenizer.eos_token_id, end) if i is not None))


@dataclass
class ChatTemplateFormat:
    """Render with a tokenizer's own chat template (`apply_chat_template(..., tools=...)`).

    Segments come from rendering growing prefixes of the conversation and taking the difference, so the template
    must be prefix-preserving (checked; a `ValueError` names the message index otherwise). Inside an assistant
    segment the call text is located by its known offset within the message content.

    A template without a tools block would drop the tool list silently. That is detected once per renderer
    (`template_renders_tools`); the tools then go into the system message instead (`tool_system_block`, before the
    conversation's own system text, or as a system message of their own). Every rendered text is checked to name
    every tool of the conversation (a `ValueError` otherwise).

    Args:
        tokenizer: an HF tokenizer with a chat template.
    """

    tokenizer: Any
    _renders_tools: bool | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        try:  # checked at setup: training on a turn end that generation cannot stop at would never stop
            end_of_turn_token(self.tokenizer)
        except ValueError as e:
            raise UserError(str(e)) from None

    @property
    def renders_tools(self) -> bool:
        """Whether the template renders `tools=` itself (otherwise the renderer writes them into the system)."""
        if self._renders_tools is None:
            self._renders_tools = template_renders_tools(self.tokenizer)
        return self._renders_tools

    def _apply(self, conv: Conversation, msgs: list[dict], gen: bool) -> str:
        tools = [{"type": "function", "function": t.to_openai()} for t in conv.tools] or None
        if not self.renders_tools:
            tools = None  # they are in the system message (_template_messages)
        return self.tokenizer.apply_chat_template(msgs, tools=tools, tokenize=False, add_generation_prompt=gen)

    def _template_messages(self, conv: Conversation,
                           messages: tuple[Message, ...]) -> list[tuple[int, Message | None, dict]]:
        """(message index, message, template dict) per template message; the tool block's system message has
        index -1 when it stands alone, and the conversation's system message's index when merged into it."""
        out: list[tuple[int, Message | None, dict]] = []
        for i, msg in enumerate(messages):
            content = join_rendered(render_calls(msg.calls)) if msg.calls else msg.content
            out.append((i, msg, {"role": msg.role, "content": content}))
        if conv.tools and not self.renders_tools:
            block = tool_system_block(conv.tools)
            if out and out[0][2]["role"] == "system":
                i, msg, hf = out[0]
                out[0] = (i, msg, {"role": "system", "content": f"{block}\n\n{hf['content']}".rstrip()})
            else:
                out.insert(0, (-1, None, {"role": "system", "content": block}))
        return out

    def render(self, conv: Conversation, messages: tuple[Message, ...] | None = None,
               add_generation_prompt: bool = False) -> Rendered:
        messages = conv.messages if messages is None else messages
        hf_msgs: list[dict] = []
        b = _Builder()
        prev = ""
        for i, msg, hf in self._template_messages(conv, messages):
            hf_msgs.append(hf)
            text = self._apply(conv, hf_msgs, gen=False)
            if not text.startswith(prev):
                raise ValueError(f"chat template is not prefix-preserving at message {i} of {conv.id!r}")
            piece = text[len(prev):]
            if msg is not None and msg.role == "assistant":
                self._add_assistant(b, piece, hf["content"], msg, i, conv.id)
            else:
                b.add(piece, hf["role"], i, False)
            prev = text
        if add_generation_prompt:
            text = self._apply(conv, hf_msgs, gen=True)
            b.add(text[len(prev):], "header", len(messages), False)
        out = b.build(add_special_tokens=False)  # templates write their own BOS
        missing = [t.name for t in conv.tools if t.name not in out.text]
        if missing:
            raise ValueError(f"chat template dropped tools {missing[:5]} of {conv.id!r} from the prompt")
        return out

    @staticmethod
    def _add_assistant(b: _Builder, piece: str, content: str, msg: Message, i: int, conv_id: str) -> None:
        off = piece.find(content) if content else -1  # our own content inside the template's segment
        if off < 0:
            raise ValueError(f"chat template dropped the assistant content of message {i} of {conv_id!r}")
        rendered = render_calls(msg.calls)
        b.add(piece[:off], "header", i, False)  # the template's role header is context, not target
        cstart = b.pos
        b.add(piece[off:], "assistant", i, True, call_names=tuple(c.name for c in msg.calls),
              name_spans=tuple((cstart + o + rc.name[0], cstart + o + rc.name[1]) for o, rc in rendered),
              arg_spans=tuple(((cstart + o + k[0], cstart + o + k[1]), (cstart + o + v[0], cstart + o + v[1]))
                              for o, rc in rendered for k, v in rc.args))


def make_renderer(prompt_format: str, tokenizer) -> Renderer:
    """The renderer for a datamodule's `prompt_format` ("paper" or "chat_template")."""
    if prompt_format == "paper":
        return PaperFormat(eos_token=tokenizer.eos_token)
    if prompt_format == "chat_template":
        return ChatTemplateFormat(tokenizer)
    raise ValueError(f"prompt_format must be 'paper' or 'chat_template', got {prompt_format!r}")
