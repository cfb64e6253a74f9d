"""Our formats as files that plain transformers reads, so that `tokenizer.apply_chat_template(messages, tools=...)`
renders what training rendered and `tokenizer.parse_response(text, prefix=...)` reads back the calls our parser
reads, with no code of ours (vLLM, TGI, plain transformers).

* The paper format (`paper_chat_template`): `paper_format.jinja` re-implements `render.PaperFormat`.
* A model's own chat template (`tools_chat_template`): `tools_prelude.jinja` does before that template what
  `render.ChatTemplateFormat` does: calls as Python-call text, the tool block in the system message when the
  template has no tools block of its own.
* Both write calls with `python_calls.jinja` (`call_format.render_call`: Python literals, `**{...}` for keys that
  are not names) and parse them with `python_calls_response_template`.

Messages are OpenAI-style: assistant `tool_calls` with `arguments` as a JSON object (not a string), tools as
function specs. Tested token for token against the renderers, and call for call against `parse_calls`, on RoTBench
and ToolAlpaca items (`tests/format/test_chat_template.py`).
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path

from tl_lightning.format.render import TOOLS_INSTRUCTION
from tl_lightning.format.schema import _TYPE_ALIASES, JSON_TYPES

HERE = Path(__file__).parent


def _template(constants: dict, *files: str) -> str:
    base = {"KEYWORDS": keyword.kwlist, "ALIASES": _TYPE_ALIASES, "TYPES": list(JSON_TYPES)}
    header = "".join(f"{{%- set {k} = {json.dumps(v)} -%}}" for k, v in {**base, **constants}.items())
    return header + "".join((HERE / f).read_text(encoding="utf-8").strip() for f in files)


def paper_chat_template(eos_token: str, head: str = "") -> str:
    """The Jinja source: `head` is what precedes "System:" so that the template's text, tokenized without special
    tokens, gives the renderer's tokens (the BOS the tokenizer adds, and the leading space SentencePiece gives a
    text's first word: `data.tokenization.exported_chat_template` finds it)."""
    return _template({"HEAD": head, "EOS": eos_token}, "python_calls.jinja", "paper_format.jinja")


def tools_chat_template(model_template: str, renders_tools: bool) -> str:
    """A model's own chat template behind the prelude that renders our calls (and, when `renders_tools` is false,
    our tool block) into the messages it reads."""
    constants = {"INSTRUCTION": TOOLS_INSTRUCTION, "RENDERS_TOOLS": renders_tools}
    return _template(constants, "python_calls.jinja", "tools_prelude.jinja") + model_template


# A Python literal as the response parser sees it: a quoted string, a bracketed literal (nested), or a bare token
# (number, True/False/None). The argument's key is a name before "=", or the quoted key of a `**{'key': value}`.
_STRING = r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*\""""
_NESTED = r"""(?P<nested>[\[{](?:[^\[\]{}'"]|""" + _STRING + r"""|(?&nested))*[\]}])"""
_KEY = r"""(?:(?P<key>[^\W\d]\w*)=|\*\*\{'(?P<key>[^'\\]*)':\s*|\*\*\{"(?P<key>[^"\\]*)":\s*)"""
ARGUMENT_PATTERN = _KEY + "(?P<value>" + _STRING + "|" + _NESTED + r"""|[^,\s()\[\]{}'"]+)"""


def python_calls_response_template(start_anchor: str, end_markers: list[str]) -> dict:
    """A transformers `response_template` that reads our call format: one `name(k=v, ...)` per line, as
    `tool_calls` with `arguments` objects; any other reply is `content`.

    `start_anchor` is the text that opens the assistant turn (what the prompt ends with), `end_markers` the texts
    that may end it (EOS, the end-of-turn token). Values are read as JSON once their quotes are made JSON's; pass
    `tools=` to `parse_response` to get booleans and None from `True`/`False`/`None`. Strings with backslash escapes
    are the limit: transformers' JSON parser takes text between custom quotes verbatim, so `'a\\nb'` comes back
    with the backslash (`tests/format/test_chat_template.py` counts them)."""
    ends = "|".join(re.escape(m) for m in end_markers)
    value_parser = {"name": "json", "args": {"string_delims": [['"', '"'], ["'", "'"]], "allow_non_json": True}}
    return {
        "version": 1, "start_anchor": start_anchor, "defaults": {"role": "assistant"},
        "fields": {
            "tool_calls": {
                # A call starts a line; the whitespace before it (the separator newline) is swallowed so that it
                # does not open an empty `content` region.
                "open_pattern": r"\s*(?:\A|(?<=\n))[ \t]*(?P<name>[^\W\d][\w.\-]*)\(",
                "close_pattern": r"\)[ \t]*(?=\n|\Z" + (f"|{ends}" if ends else "") + ")",
                "repeats": True, "content": "xml-inline",
                "content_args": {"tag_pattern": ARGUMENT_PATTERN, "value_parser": value_parser},
                "transform": {"type": "function", "function": {"name": "{name}", "arguments": "{content}"}},
            },
            "content": {"close_pattern": r"\s*(?:" + (ends or r"\Z") + ")", "content": "text"},
        },
    }


def openai_messages(messages) -> list[dict]:
    """Our messages as OpenAI-style dicts with `tool_calls` whose `arguments` are objects (what the template reads)."""
    out = []
    for m in messages:
        d = {"role": m.role, "content": m.content}
        if m.calls:
            d["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                               for c in m.calls]
        out.append(d)
    return out
