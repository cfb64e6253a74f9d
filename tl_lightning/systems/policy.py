"""`PolicyRunner`: the model passes of RL on one quantized base with several LoRA adapters.

It samples rollouts (batched generation, seeded) and runs a rollout through the decoder under one adapter (or
none), applying the output head to the response positions only (Note [chunked head] in objectives/chunked.py).
The RL system owns the optimisation; this class owns how the model is called.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from tl_lightning.data.batches import PromptBatch
from tl_lightning.format.render import stop_token_ids
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

    Generation stops at EOS and at the chat template's end-of-turn token (`format.render.stop_token_ids`). The
    learner's log-probs use the rollouts' sampling temperature (Note [sampling distribution]).
    """

    def __init__(self, model, tokenizer, generation: GenerationSettings, chunk_size: int | None,
                 rollout_chunk_size: int | None = None) -> None:
        self.model, self.tokenizer, self.generation, self.chunk_size = model, tokenizer, generation, chunk_size
        self.rollout_chunk_size = rollout_chunk_size
        self.decoder, self.head = decoder_and_head(model)
        self.stop_ids = stop_token_ids(tokenizer)

    def sample(self, batch: PromptBatch, seed: int, device: torch.device, first_chunk: int = 0) -> Rollout:
        """Responses of the policy ("default", eval mode, no grad), `rollout_chunk_size` prompts at a time; sampling
        depends only on `seed` and the chunks: chunk k is seeded with seed + first_chunk + k (a rank's rollout is
        chunks first_chunk.. of the global batch, so N ranks sample what one process would in chunks)."""
        tok = self.tokenizer
        self.model.eval()
        self.model.set_adapter("default")
        prompts, step = batch.input_ids, self.rollout_chunk_size or len(batch.input_ids)
        responses: list[list[int]] = []
        logq: list[list[float]] | None = [] if self.generation.do_sample else None
        for k, start in enumerate(range(0, len(prompts), step)):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed + first_chunk + k)
                out = generate_responses(self.model, prompts[start: start + step], tok.pad_token_id, self.stop_ids,
                                         self.generation)
            responses += out.responses
            if logq is not None:
                logq += out.logprobs
        if device.type == "cuda":
            torch.cuda.empty_cache()  # hand the generation cache's blocks back before the passes with gradients
        texts = [tok.decode(r, skip_special_tokens=True) for r in responses]
        return build_rollout(batch.input_ids, responses, tok.pad_token_id, self.stop_ids, texts,
                             self.generation.max_prompt_length, logq).to(device)

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
                               with_entropy, self.generation.sampling_temperature)
        shape = targets.shape
        return Pass(hidden, stats.logp.view(shape), None if stats.entropy is None else stats.entropy.view(shape))

    def hidden(self, rollout: Rollout, adapter: str | None) -> torch.Tensor:
        return self.forward(rollout, adapter).hidden
