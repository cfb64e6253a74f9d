"""The paper format as a Jinja chat template, so that `tokenizer.apply_chat_template(messages, tools=...)` renders
what `render.PaperFormat` renders, with no code of ours (vLLM, TGI, plain transformers). Messages are OpenAI-style:
assistant `tool_calls` with `arguments` as a JSON object (not a string), tools as function specs. The template
re-implements `render_tool_def` (required parameters first, types normalised, one-line descriptions, quoted names
that are not identifiers) and `call_format.render_call` (Python literals, `**{...}` for keys that are not names).
Tested token for token against the renderer on RoTBench and ToolAlpaca items (`tests/format/test_chat_template.py`).
"""

from __future__ import annotations

import json
import keyword
from pathlib import Path

from tl_lightning.format.schema import _TYPE_ALIASES, JSON_TYPES

TEMPLATE_FILE = Path(__file__).with_name("paper_format.jinja")


def paper_chat_template(eos_token: str, head: str = "") -> str:
    """The Jinja source: `head` is what precedes "System:" so that the template's text, tokenized without special
    tokens, gives the renderer's tokens (the BOS the tokenizer adds, and the leading space SentencePiece gives a
    text's first word: `data.tokenization.exported_chat_template` finds it)."""
    constants = {"KEYWORDS": keyword.kwlist, "ALIASES": _TYPE_ALIASES, "TYPES": list(JSON_TYPES), "HEAD": head,
                 "EOS": eos_token}
    header = "".join(f"{{%- set {k} = {json.dumps(v)} -%}}" for k, v in constants.items())
    return header + TEMPLATE_FILE.read_text(encoding="utf-8").strip()


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
