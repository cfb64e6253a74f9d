"""`PolicyRunner`: the model passes of RL on one quantized base with several LoRA adapters.

It samples rollouts (batched generation, seeded) and runs a rollout through the decoder under one adapter (or
none), applying the output head to the response positions only (Note [chunked head] in objectives/chunked.py).
The RL system owns the optimisation; this class owns how the model is called.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from tl_lightning.data.batches import PromptBatch
from tl_lightning.format.render import stop_token_ids
from tl_lightning.models.engine import DecodeLoop, RolloutEngine
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import decoder_and_head
from tl_lightning.objectives.chunked import head_stats
from tl_lightning.systems.ppo_rollout import Pass, PPOSettings, Rollout, build_rollout, position_ids

REFERENCE_ADAPTER = "reference"
"""The frozen copy of the SFT adapter that RL regularises to (loaded beside the trained "default" adapter)."""


class PolicyRunner:
    """Model passes for RL.

    Args:
        model: the peft model (adapters "default", optionally "reference" and "critic").
        tokenizer: for pad / end-of-sequence ids and decoding.
        generation: rollout decoding settings.
        ppo: the system's PPO settings, read (not copied) for `rollout_chunk_size` (sequences generated at once) and
            `logprob_chunk_size` (response positions whose logits exist at once).
        engine: the rollout engine that generates (`models/engine.py`); told at every `sample` that the policy
            changed, so a dense sampling copy is rebuilt from the updated adapter.

    Generation stops at EOS and at the chat template's end-of-turn token (`format.render.stop_token_ids`). The
    learner's log-probs use the rollouts' sampling temperature (Note [sampling distribution]).
    """

    def __init__(self, model, tokenizer, generation: GenerationSettings, ppo: PPOSettings,
                 engine: RolloutEngine | None = None) -> None:
        self.model, self.tokenizer, self.generation, self.ppo = model, tokenizer, generation, ppo
        self.engine = engine or DecodeLoop()
        self.decoder, self.head = decoder_and_head(model)
        self.stop_ids = stop_token_ids(tokenizer)

    def sample(self, batch: PromptBatch, seed: int, device: torch.device, rank: int = 0) -> Rollout:
        """Responses of the policy ("default", eval mode, no grad), `rollout_chunk_size` prompts at a time; sampling
        depends only on `seed` and the chunks: chunk k of the global batch is seeded with seed + k. Every rank holds
        an equal share of the global batch, so its chunks are rank × chunks-per-rank onwards, and N ranks sample
        what one process would in chunks."""
        tok = self.tokenizer
        self.model.eval()
        self.model.set_adapter("default")
        prompts, step = batch.input_ids, self.ppo.rollout_chunk_size or len(batch.input_ids)
        first_chunk = rank * math.ceil(len(prompts) / step)
        self.engine.policy_changed()  # sample() follows an update (or the first load): derived copies are stale
        responses: list[list[int]] = []
        logq: list[list[float]] | None = [] if self.generation.do_sample else None
        for k, start in enumerate(range(0, len(prompts), step)):
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed + first_chunk + k)
                out = self.engine.generate(self.model, prompts[start: start + step], tok.pad_token_id,
                                           self.stop_ids, self.generation)
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
            stats = head_stats(h.reshape(-1, h.size(-1)), self.head, targets.reshape(-1), self.ppo.logprob_chunk_size,
                               with_entropy, self.generation.sampling_temperature)
        shape = targets.shape
        return Pass(hidden, stats.logp.view(shape), None if stats.entropy is None else stats.entropy.view(shape))

    def hidden(self, rollout: Rollout, adapter: str | None) -> torch.Tensor:
        return self.forward(rollout, adapter).hidden
