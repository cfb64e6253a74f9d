"""Test helpers shared across the suite (import as `from helpers import ...`; tests/ is on sys.path).

* `SHARED_DATA`, `FIXTURES`, `shared_data(...)`: the real benchmark files in ../shared/data (tests that need them
  skip when the folder is absent) and the bad-input fixtures.
* `ScriptedModel`: a "model" whose `generate` answers each prompt with a fixed text (e.g. its gold call). It goes
  through the real tokenizer, left padding, EOS cutting, decoding, parsing and classification, so evaluation can
  be tested for exact scores without a trained model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


def shared_data(*parts: str) -> Path:
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (the ../shared data folder beside the repo)")
    return p


class ScriptedModel(torch.nn.Module):
    def __init__(self, tokenizer, answer_for_prompt):
        """`answer_for_prompt(prompt_text) -> answer text` (the text after "Assistant:")."""
        super().__init__()
        self.tok = tokenizer
        self.answer_for_prompt = answer_for_prompt
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = 0

    def generate(self, input_ids, attention_mask, max_new_tokens, eos_token_id, pad_token_id, **kwargs):
        self.calls += 1
        stop = eos_token_id[0] if isinstance(eos_token_id, list) else eos_token_id  # generation passes stop ids
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = self.tok.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=False)
            answer = self.tok(" " + self.answer_for_prompt(prompt), add_special_tokens=False)["input_ids"]
            rows.append((answer + [stop])[:max_new_tokens])
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows], dtype=torch.long)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


def pkt_oracle_keys(tokenizer, rendered, seg, name, span, candidates):
    """PKT key tokens by an independent rule (character offsets of their first characters): tokenize the whole text
    up to the turn's end with each candidate in place of the gold name (full context) and compare token by token."""
    def from_name(text, at):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        first = next(i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > at)
        return enc["input_ids"][first:], [a for a, _ in enc["offset_mapping"][first:]]

    gold, gold_starts = from_name(rendered.text[: seg.end], span[0])
    keys = {gold_starts[0]}
    for c in candidates:
        if c == name:
            continue
        other, _ = from_name(rendered.text[: span[0]] + c + rendered.text[span[1]: seg.end], span[0])
        lcp = next((i for i, (a, b) in enumerate(zip(gold, other)) if a != b), min(len(gold), len(other)))
        if lcp > 0 and gold != other:
            keys.add(gold_starts[min(lcp, len(gold) - 1)])
    return keys


def pkt_keys_vs_oracle(tokenizer, rendered, candidates) -> tuple[set[int], set[int], object]:
    """The key tokens PKT marks in the last trained turn of `rendered` and those the oracle finds, both as the
    character offsets where the tokens start; with that turn's segment."""
    from tl_lightning.data.tokenization import encode_rendered, tokenize_rendered
    from tl_lightning.data.weighting import PKTWeighting

    enc = encode_rendered(rendered, tokenizer, candidates, weighting=PKTWeighting())
    offsets = tokenize_rendered(rendered, tokenizer, offsets=True)["offset_mapping"]
    seg = [s for s in rendered.segments if s.trainable][-1]
    got = {offsets[i][0] for i, k in enumerate(enc.key_mask) if k}
    want = set()
    for name, span in zip(seg.call_names, seg.name_spans):
        want |= pkt_oracle_keys(tokenizer, rendered, seg, name, span, candidates)
    return got, want, seg
