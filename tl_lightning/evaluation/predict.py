"""Render step prompts, generate in length-sorted batches, parse and classify: one path for every consumer."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tl_lightning.data.call_format import ParseResult, parse_calls
from tl_lightning.data.render import Renderer
from tl_lightning.data.schema import Conversation
from tl_lightning.models.generation import GenerationSettings, generate_responses
from tl_lightning.rewards.taxonomy import FREE_TEXT_TOOLS, Classification, classify, golds_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One decoded step: the prompt's conversation, the raw text, its parse and its classification."""

    conversation: Conversation
    text: str
    parsed: ParseResult
    classification: Classification
    prompt_tokens: int
    response_tokens: int


def prompt_token_ids(prompts: list[Conversation], renderer: Renderer, tokenizer, add_special_tokens: bool) -> list[list[int]]:
    return [tokenizer(renderer.render(c, add_generation_prompt=True).text, add_special_tokens=add_special_tokens)["input_ids"]
            for c in prompts]


def predict(model, tokenizer, renderer: Renderer, prompts: list[Conversation], settings: GenerationSettings,
            batch_size: int = 8, add_special_tokens: bool = True,
            free_text_tools: frozenset[str] = FREE_TEXT_TOOLS) -> list[Prediction]:
    """Greedy/sampled decoding of `prompts` (in their order), each parsed and classified against its gold."""
    ids = prompt_token_ids(prompts, renderer, tokenizer, add_special_tokens)
    too_long = sum(len(x) > settings.max_prompt_length for x in ids)
    if too_long:  # the head (tool definitions) is cut: results on these prompts are not comparable
        log.warning("%d of %d prompts exceed max_prompt_length=%d and keep only their last tokens",
                    too_long, len(ids), settings.max_prompt_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths per batch: less padding
    responses: dict[int, list[int]] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        outs = generate_responses(model, [ids[i] for i in chunk], tokenizer.pad_token_id, tokenizer.eos_token_id, settings)
        responses.update(zip(chunk, outs))
    preds = []
    for i, conv in enumerate(prompts):
        text = tokenizer.decode(responses[i], skip_special_tokens=True)
        parsed = parse_calls(text)
        # noisy data (data/noise.py) renames the finish / ask_to_user roles per conversation
        free = frozenset(conv.meta["free_text_tools"]) if "free_text_tools" in conv.meta else free_text_tools
        preds.append(Prediction(conv, text, parsed, classify(parsed, golds_for(conv), conv.tools, free),
                                len(ids[i]), len(responses[i])))
    return preds
