"""How many PKT key tokens the token-level rule moves compared with the old character-prefix rule, on the real
tool lists of the shared benchmark files, for a given tokenizer.

For every gold call (RoTBench, ToolAlpaca) or assistant call (ToolBench trajectories), the conversation's context
plus that call is rendered in the paper format and tokenized; key tokens are chosen by both rules. Printed as JSON:
calls, calls with a candidate sharing the name's first token, calls whose key set changed, and key tokens in each
rule's set only.

    python -m benchmarks.pkt_keys [--tokenizer DIR]    # default: a freshly built tiny checkpoint's tokenizer
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import encode_rendered, tokenize_rendered
from tl_lightning.data.weighting import PKTWeighting
from tl_lightning.format.render import PaperFormat
from tl_lightning.format.schema import Conversation, Message
from tl_lightning.objectives.token_weights import key_char_positions, tokens_at

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = {"rotbench_first_turn_clean": ("rotbench", "rotbench/Data/First_Turn/clean.json"),
           "toolalpaca_eval_real": ("toolalpaca", "toolalpaca/data/eval_real.json"),
           "toolbench_examples": ("toolbench", "toolbench/data_example/answer")}


def calls_in_context(conv: Conversation) -> list[Conversation]:
    """One conversation per scored call: the context up to it, ending with that call as the assistant turn."""
    if conv.gold:
        return [Conversation(conv.id, conv.tools, conv.messages + (Message("assistant", calls=conv.gold[0]),))]
    return [Conversation(f"{conv.id}#{i}", conv.tools, conv.messages[: i + 1])
            for i, m in enumerate(conv.messages) if m.role == "assistant" and m.calls]


def compare(conv: Conversation, tok, fmt: PaperFormat) -> tuple[set[int], set[int], bool]:
    rendered = fmt.render(conv)
    seg = [s for s in rendered.segments if s.trainable][-1]
    others = frozenset(i for i, s in enumerate(conv.messages[:-1]) if s.role == "assistant")
    enc = encode_rendered(rendered, tok, conv.tool_names, others, PKTWeighting())
    offsets = np.asarray(tokenize_rendered(rendered, tok, offsets=True)["offset_mapping"]).reshape(-1, 2)
    inside = (offsets[:, 0] >= seg.start) & (offsets[:, 1] <= seg.end)
    token_rule = {i for i, k in enumerate(enc.key_mask) if k and inside[i]}
    chars = [c for name, (n0, _) in zip(seg.call_names, seg.name_spans)
             for c in key_char_positions(name, n0, conv.tool_names)]
    char_rule = set(tokens_at(chars, offsets[:, 0], offsets[:, 1]))
    rivals = any(c != n and c[:1] == n[:1] for n in seg.call_names for c in conv.tool_names)
    return token_rule, char_rule, rivals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=None, help="a checkpoint directory with a tokenizer (default: tiny)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if a.tokenizer is None:
            from tl_lightning.models.tiny import build_tiny_checkpoint

            a.tokenizer = str(build_tiny_checkpoint(Path(d) / "tiny"))
        tok = load_tokenizer(a.tokenizer)
        fmt = PaperFormat(tok.eos_token)
        out = {"tokenizer": a.tokenizer if "tiny" not in a.tokenizer else "tiny (ToolWorld BPE)"}
        for name, (source_format, path) in SOURCES.items():
            n = with_rivals = changed = only_token = only_char = 0
            for conv in load_source(source_format, SHARED / path):
                for call in calls_in_context(conv):
                    token_rule, char_rule, rivals = compare(call, tok, fmt)
                    n += 1
                    with_rivals += rivals
                    changed += token_rule != char_rule
                    only_token += len(token_rule - char_rule)
                    only_char += len(char_rule - token_rule)
            out[name] = {"calls": n, "calls_with_a_rival_sharing_the_first_letter": with_rivals,
                         "calls_whose_key_tokens_moved": changed, "key_tokens_only_in_token_rule": only_token,
                         "key_tokens_only_in_char_rule": only_char}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
