"""`PolicyRunner`: the model passes of RL on one quantized base with several LoRA adapters.

It samples rollouts (batched generation, seeded) and runs a rollout through the decoder under one adapter (or
none), applying the output head to the response positions only (Note [chunked head] in objectives/chunked.py).
The RL system owns the optimisation; this class owns how the model is called.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from tl_lightning.data.batches import PromptBatch
from tl_lightning.models.generation import GenerationSettings, generate_responses
from tl_lightning.models.loading import decoder_and_head
from tl_lightning.objectives.chunked import head_stats
from tl_lightning.systems.ppo_rollout import Pass, Rollout, build_rollout, position_ids


class PolicyRunner:
    """Model passes for RL.

    Args:
        model: the peft model (adapters "default", optionally "reference" and "critic").
        tokenizer: for pad / end-of-sequence ids and decoding.
        generation: rollout decoding settings.
        chunk_size: response positions whose logits exist at once.
        rollout_chunk_size: sequences generated at once (None: the whole batch).
    """

    def __init__(self, model, tokenizer, generation: GenerationSettings, chunk_size: int | None,
                 rollout_chunk_size: int | None = None) -> None:
        self.model, self.tokenizer, self.generation, self.chunk_size = model, tokenizer, generation, chunk_size
        self.rollout_chunk_size = rollout_chunk_size
        self.decoder, self.head = decoder_and_head(model)

    def sample(self, batch: PromptBatch, seed: int, device: torch.device) -> Rollout:
        """Responses of the policy ("default", eval mode, no grad), `rollout_chunk_size` prompts at a time; sampling
        depends only on `seed` (and the chunk size: chunk k is seeded with seed + k)."""
        tok = self.tokenizer
        self.model.eval()
        self.model.set_adapter("default")
        prompts, step = batch.input_ids, self.rollout_chunk_size or len(batch.input_ids)
        responses: list[list[int]] = []
        for k, start in enumerate(range(0, len(prompts), step)):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed + k)
                responses += generate_responses(self.model, prompts[start: start + step], tok.pad_token_id,
                                                tok.eos_token_id, self.generation)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the generation cache's blocks back before the passes with gradients
        texts = [tok.decode(r, skip_special_tokens=True) for r in responses]
        r = build_rollout(batch.input_ids, responses, tok.pad_token_id, tok.eos_token_id, texts,
                          self.generation.max_prompt_length)
        return Rollout(*(x.to(device) if torch.is_tensor(x) else x for x in (
            r.sequences, r.attention_mask, r.response_mask, r.prompt_length, r.texts, r.stopped)))

    def forward(self, rollout: Rollout, adapter: str | None, head: bool = False, with_entropy: bool = False) -> Pass:
        """The final hidden states (b, P+R, h) under `adapter` (None: adapters off) and, with `head`, the response
        tokens' log-probs (b, R) (and entropy): no full-vocabulary logits of the batch ever exist."""
        kwargs = dict(input_ids=rollout.sequences, attention_mask=rollout.attention_mask,
                      position_ids=position_ids(rollout.attention_mask), use_cache=False)
        if adapter is not None:
            self.model.set_adapter(adapter)  # note: peft makes only the active adapter trainable
        with self.model.disable_adapter() if adapter is None else nullcontext():
            hidden = self.decoder(**kwargs).last_hidden_state
            if not head:
                return Pass(hidden, None, None)
            h = hidden[:, rollout.prompt_length - 1: -1]
            targets = rollout.sequences[:, rollout.prompt_length:]
            stats = head_stats(h.reshape(-1, h.size(-1)), self.head, targets.reshape(-1), self.chunk_size,
                               with_entropy)
        shape = targets.shape
        return Pass(hidden, stats.logp.view(shape), None if stats.entropy is None else stats.entropy.view(shape))

    def hidden(self, rollout: Rollout, adapter: str | None) -> torch.Tensor:
        return self.forward(rollout, adapter).hidden
