"""Generate for step prompts in length-sorted batches, parse and classify: one path for every consumer (SFT
validation, benchmark evaluation, benchmarks and probes)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tl_lightning.data.batches import PromptBatch
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.format.call_format import ParseResult
from tl_lightning.format.render import Renderer, stop_token_ids
from tl_lightning.format.schema import Conversation
from tl_lightning.format.tools import FREE_TEXT_TOOLS
from tl_lightning.metrics.scoring import score_by_mode
from tl_lightning.models.engine import DecodeLoop, RolloutEngine
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.rewards.taxonomy import Classification, ScoringMode

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
    group: str = ""
    scoring: ScoringMode = "lenient"


def predict_batch(model, tokenizer, batch: PromptBatch, settings: GenerationSettings, batch_size: int | None = None,
                  free_text_tools: frozenset[str] = FREE_TEXT_TOOLS,
                  engine: RolloutEngine | None = None) -> list[Prediction]:
    """Decode a `PromptBatch` (in its order; generated `batch_size` at a time, shortest prompts together) with
    `engine` (default: a `DecodeLoop`; pass one engine across calls so that its dense copy is built once)."""
    engine = engine or DecodeLoop()
    ids = batch.input_ids
    too_long = sum(len(x) > settings.max_prompt_length for x in ids)
    if too_long:  # the head (tool definitions) is cut: results on these prompts are not comparable
        log.warning("%d of %d prompts exceed max_prompt_length=%d and keep only their last tokens",
                    too_long, len(ids), settings.max_prompt_length)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths per batch: less padding
    step = batch_size or len(ids)
    stops = stop_token_ids(tokenizer)
    responses: dict[int, list[int]] = {}
    for start in range(0, len(order), step):
        chunk = order[start:start + step]
        outs = engine.generate(model, [ids[i] for i in chunk], tokenizer.pad_token_id, stops, settings)
        responses.update(zip(chunk, outs.responses))
    preds = []
    for i, conv in enumerate(batch.conversations):
        text = tokenizer.decode(responses[i], skip_special_tokens=True)
        # benchmark prompts carry their benchmark's scoring mode (BenchmarkDataModule); other prompts are lenient
        mode = batch.scoring[i]
        parsed, classification = score_by_mode(text, conv, mode, free_text_tools)
        preds.append(Prediction(conv, text, parsed, classification, len(ids[i]), len(responses[i]), batch.groups[i],
                                mode))
    return preds


def predict(model, tokenizer, renderer: Renderer, prompts: list[Conversation], settings: GenerationSettings,
            batch_size: int = 8, free_text_tools: frozenset[str] = FREE_TEXT_TOOLS,
            engine: RolloutEngine | None = None) -> list[Prediction]:
    """Render, tokenize and decode step prompts (in their order), each parsed and classified against its gold."""
    ids = prompt_token_ids(prompts, renderer, tokenizer)
    return predict_batch(model, tokenizer, PromptBatch(ids, list(prompts), [""] * len(prompts)), settings, batch_size,
                         free_text_tools, engine)
