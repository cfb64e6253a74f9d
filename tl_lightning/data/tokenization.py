"""Rendered conversation → input_ids, labels, PKT weights and key mask, via the tokenizer's offset mapping.

One pass over the whole conversation: every assistant turn is trained in the same sequence (the paper code makes
one copy per turn). A token is trained when it lies inside a trainable segment whose message is not blocked by MAE.
Nothing here searches text: positions come from the renderer's character spans.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from tl_lightning.core.constants import IGNORE_INDEX
from tl_lightning.data.weighting import TokenWeighting, UniformWeighting
from tl_lightning.format.render import Rendered, Renderer
from tl_lightning.format.schema import Conversation


@dataclass
class Encoded:
    """One tokenized training sequence (lists, aligned with `input_ids`; labels unshifted)."""

    input_ids: list[int]
    labels: list[int]
    weights: list[float]
    key_mask: list[bool]
    n_trainable: int
    n_blocked: int
    dropped_turns: int = 0
    """Trained turns that did not fit in `max_length` (their labels are dropped: never half a call)."""
    truncated: bool = False
    """Whether the sequence was cut at `max_length`."""


def tokenize_rendered(rendered: Rendered, tokenizer, offsets: bool = False) -> dict:
    """Tokenize a renderer's text under its BOS policy (the one way text of a renderer becomes tokens)."""
    return tokenizer(rendered.text, return_offsets_mapping=offsets, add_special_tokens=rendered.add_special_tokens)


def prompt_token_ids(prompts: list[Conversation], renderer: Renderer, tokenizer) -> list[list[int]]:
    """Token ids of each step prompt, rendered up to the assistant header (generation prompts)."""
    return [list(tokenize_rendered(renderer.render(c, add_generation_prompt=True), tokenizer)["input_ids"])
            for c in prompts]


def encode_rendered(rendered: Rendered, tokenizer, candidate_names: tuple[str, ...],
                    blocked: frozenset[int] = frozenset(), weighting: TokenWeighting = UniformWeighting(),
                    max_length: int | None = None, per_turn: bool = False,
                    trim_untrained_tail: bool = False) -> Encoded:
    """Tokenize `rendered.text` once and derive labels/weights from its segments.

    Args:
        rendered: text + segments from a renderer.
        tokenizer: HF tokenizer with offset mapping (a "fast"/tokenizers-backed one).
        candidate_names: tool names offered in the conversation (PKT divergence candidates).
        blocked: assistant message indices not trained (MAE blocks, untrained turns); kept in the input.
        weighting: which trained tokens are up-weighted (PKT) or none (uniform).
        max_length: keep the first `max_length` tokens. A trained turn that does not fit whole loses its labels
            (counted in `dropped_turns`), so no step ever trains on half a call.
        per_turn: scale each turn's weights to sum to 1 (Note [weight normalisation] in objectives/weighted_ce.py:
            the paper code's per-turn mean), instead of one weight per token.
        trim_untrained_tail: end the sequence at its last trained token. What follows it (a trailing tool output,
            a turn blocked by MAE, an untrained final reply) is no label and, under causal attention, changes no
            earlier logit: the loss and gradients are the same, and the step skips those tokens.
    """
    enc = tokenize_rendered(rendered, tokenizer, offsets=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    real = ends > starts  # special tokens added by the tokenizer have empty offsets
    limit = len(ids) if max_length is None else min(len(ids), max_length)
    labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
    weights = np.zeros(len(ids), dtype=np.float32)
    key_mask = np.zeros(len(ids), dtype=bool)
    blocked_mask = np.zeros(len(ids), dtype=bool)
    dropped = 0
    for seg in rendered.segments:
        if not seg.trainable:
            continue
        inside = real & (starts >= seg.start) & (ends <= seg.end)
        if seg.message_index in blocked:
            blocked_mask |= inside
            continue
        if inside.any() and np.nonzero(inside)[0][-1] >= limit:  # the turn (or its stop token) is cut off
            dropped += 1
            continue
        labels[inside] = ids[inside]
        weights[inside] = 1.0
        key, w = weighting.key_tokens(rendered.text, seg, ids, starts, ends, inside, tokenizer, candidate_names)
        weights[key] = w
        key_mask[key] = True
        if per_turn and inside.any():
            weights[inside] /= weights[inside].sum()
    truncated = limit < len(ids)
    trained = np.nonzero(labels[:limit] != IGNORE_INDEX)[0]
    if trim_untrained_tail and len(trained):
        limit = int(trained[-1]) + 1
    labels, weights, key_mask = labels[:limit], weights[:limit], key_mask[:limit]
    return Encoded(ids[:limit].tolist(), labels.tolist(), weights.tolist(), key_mask.tolist(), len(trained),
                   int(blocked_mask[:limit].sum()), dropped, truncated)


def check_prefix(rendered: Rendered, tokenizer) -> list[int]:
    """Message indices of trainable segments whose preceding text does not tokenize to a prefix of the full
    sequence (then the model sees different context tokens at generation time than in training)."""
    full = tokenize_rendered(rendered, tokenizer)["input_ids"]
    bad = []
    for seg in rendered.segments:
        if seg.trainable:
            prefix = tokenizer(rendered.text[: seg.start], add_special_tokens=rendered.add_special_tokens)["input_ids"]
            if full[: len(prefix)] != prefix:
                bad.append(seg.message_index)
    return bad


def turn_continuation_ids(renderer: Renderer, tokenizer, conv: Conversation, stop_text: str) -> list[int]:
    """Token ids of what follows the last assistant turn of `conv` after its stop token: the tool messages after
    it and the header of the next assistant turn (`add_generation_prompt`). Online RL appends these to the tokens
    the policy sampled, so no earlier turn is ever re-tokenized. `stop_text` is the stop token as text (EOS in the
    paper format, the template's end-of-turn token otherwise); what a template writes after it (ChatML's newline)
    belongs to the continuation."""
    rendered = renderer.render(conv, add_generation_prompt=True)
    last = max(i for i, m in enumerate(conv.messages) if m.role == "assistant")
    seg = next(s for s in reversed(rendered.segments) if s.message_index == last and s.role == "assistant")
    cut = rendered.text.rfind(stop_text, seg.start, seg.end)
    if cut < 0:
        raise ValueError(f"the rendered assistant turn of {conv.id!r} does not end with the stop token {stop_text!r}")
    # tokenized behind the stop token, as in the full render: alone, SentencePiece would give the text a leading
    # "▁" (Llama's dummy prefix) that the full render does not have
    head = tokenizer(stop_text, add_special_tokens=False)["input_ids"]
    ids = tokenizer(rendered.text[cut:], add_special_tokens=False)["input_ids"]
    if ids[:len(head)] == head:
        return list(ids[len(head):])
    return list(tokenizer(rendered.text[cut + len(stop_text):], add_special_tokens=False)["input_ids"])


def turn_by_turn_ids(renderer: Renderer, tokenizer, conv: Conversation, stop_text: str) -> list[int]:
    """`conv` tokenized the way an online episode builds it: the prompt up to the first assistant turn, then each
    assistant turn's own text up to its stop token and the continuation after it. Equal to the full render's
    tokens (up to what follows the last stop) when the format tokenizes turn by turn (`tokenization_gap`)."""
    turns = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    ids = prompt_token_ids([replace(conv, messages=conv.messages[:turns[0]])], renderer, tokenizer)[0]
    rendered = renderer.render(conv)
    for k, i in enumerate(turns):
        seg = next(s for s in reversed(rendered.segments) if s.message_index == i and s.role == "assistant")
        end = rendered.text.rfind(stop_text, seg.start, seg.end) + len(stop_text)
        ids += tokenizer(rendered.text[seg.start:end], add_special_tokens=False)["input_ids"]
        if k + 1 < len(turns):
            ids += turn_continuation_ids(renderer, tokenizer, replace(conv, messages=conv.messages[:turns[k + 1]]),
                                         stop_text)
    return ids


def tokenization_gap(renderer: Renderer, tokenizer, conv: Conversation, stop_text: str) -> int | None:
    """The first token position where the turn-by-turn stream of `conv` differs from its full render (None: equal
    up to the end of the stream)."""
    stream = turn_by_turn_ids(renderer, tokenizer, conv, stop_text)
    full = list(tokenize_rendered(renderer.render(conv), tokenizer)["input_ids"])
    return next((k for k, (a, b) in enumerate(zip(stream, full)) if a != b),
                None if len(full) >= len(stream) else len(full))


def exported_chat_template(tokenizer, prompt_format: str = "paper") -> str:
    """The chat template that renders `prompt_format` for `tokenizer` the way our renderer does
    (`format/chat_template.py`).

    Paper format: the head before "System:" is the one that makes `apply_chat_template`'s tokens (its text
    tokenized without special tokens) equal the renderer's (tokenized with them): nothing, the BOS, or the BOS and
    a space (SentencePiece's leading "▁"). Chat-template format: the tokenizer's own template behind our prelude."""
    from tl_lightning.format.chat_template import paper_chat_template, tools_chat_template
    from tl_lightning.format.render import template_renders_tools

    if prompt_format == "chat_template":
        return tools_chat_template(tokenizer.chat_template, template_renders_tools(tokenizer))
    probe = "System: Function:"
    want = tokenizer(probe, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token or ""
    for head in dict.fromkeys(["", bos, bos + " "]):
        if tokenizer(head + probe, add_special_tokens=False)["input_ids"] == want:
            return paper_chat_template(tokenizer.eos_token, head)
    raise ValueError("no chat-template head reproduces this tokenizer's special tokens around the paper format")


def exported_response_template(tokenizer, prompt_format: str = "paper") -> dict:
    """The `response_template` with which `tokenizer.parse_response` reads a reply as our parser does: the
    assistant turn opens after the generation prompt (paper: "\nAssistant:"; a chat template: what
    `add_generation_prompt` adds) and ends at EOS or the end-of-turn token."""
    from tl_lightning.format.chat_template import python_calls_response_template
    from tl_lightning.format.render import end_of_turn_token

    ends = [tokenizer.eos_token] if tokenizer.eos_token else []
    if prompt_format == "paper":
        return python_calls_response_template("\nAssistant:", ends)
    user = [{"role": "user", "content": "hi"}]
    bare = tokenizer.apply_chat_template(user, tokenize=False)
    anchor = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)[len(bare):]
    turn_end = end_of_turn_token(tokenizer)
    if turn_end is not None:
        ends = list(dict.fromkeys([tokenizer.convert_ids_to_tokens(turn_end), *ends]))
    return python_calls_response_template(anchor, ends)


def save_tokenizer(tokenizer, out, prompt_format: str) -> None:
    """Save `tokenizer` to `out` with the chat template and response template of `prompt_format`, so that
    `apply_chat_template(messages, tools=...)` renders what the model was trained on and `parse_response` reads its
    calls back. The run's own tokenizer is left as it is."""
    tokenizer = copy.copy(tokenizer)
    tokenizer.response_template = exported_response_template(tokenizer, prompt_format)
    tokenizer.chat_template = exported_chat_template(tokenizer, prompt_format)
    tokenizer.save_pretrained(out)
