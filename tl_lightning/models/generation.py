"""Batched generation for rollouts and evaluation: left padding, KV cache, greedy or sampling, stop at end of turn.

`generate_responses` returns the response token ids of each prompt cut after the first stop token (kept, so the
stop decision can be scored) and, when sampling, the log-prob each sampled token had under the distribution it was
drawn from.

Note [sampling distribution]: RL must learn from exactly the distribution that sampled. transformers fills every
generation option we leave unset from the model's `generation_config` and then from its global defaults, which
include top-k 50; its temperature is a warper the caller cannot observe. So we pass neutral values for every
logit-changing option (top-k 0, top-p 1, temperature 1, no penalties) and apply the temperature ourselves, in
`SamplingProcessor`, with the same function (`objectives.chunked.sampling_logits`) the learner applies to its
logits. The processor also records log q(token) of each sampled token (from the previous step's distribution, so
it holds one (b, vocab) tensor at a time), which the RL systems compare with the learner's log-probs
(`rollout/logprob_gap`). Top-k / top-p, when set, run after it as transformers' own warpers: allowed for
evaluation, refused for RL (the recorded and learned distributions would no longer be the sampled one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from tl_lightning.objectives.chunked import sampling_logits


@dataclass
class GenerationSettings:
    """Decoding settings."""

    max_new_tokens: int = 256
    """Upper bound on response length (paper PPO: 512)."""
    do_sample: bool = False
    """Greedy (the paper's rollouts and our evaluation) or sampling."""
    temperature: float = 1.0
    """Sampling temperature (RL applies the same temperature to the learner's logits)."""
    top_k: int = 0
    """Sample among the k most likely tokens only; 0: off. Evaluation only: RL refuses it (Note [sampling
    distribution])."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1: off. Evaluation only: RL refuses it."""
    max_prompt_length: int = 8192
    """Longer prompts keep their last tokens (the paper keeps the last 8191); counted and warned about."""

    def __post_init__(self) -> None:
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if self.top_k < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"top_k must be >= 0 and top_p in (0, 1], got {self.top_k} and {self.top_p}")

    @property
    def sampling_temperature(self) -> float:
        """The temperature of the distribution tokens are drawn from (1 for greedy decoding)."""
        return self.temperature if self.do_sample else 1.0

    @property
    def truncates(self) -> bool:
        """Whether sampling is cut to the top-k / top-p tokens (a distribution RL cannot learn from as it is)."""
        return self.do_sample and (self.top_k > 0 or self.top_p < 1.0)


class Generated(NamedTuple):
    """Per prompt: response token ids (cut after the first stop token) and, when sampling, log q of each."""

    responses: list[list[int]]
    logprobs: list[list[float]] | None


def left_pad(prompts: list[list[int]], pad_id: int, max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (b, t), left-padded; prompts longer than `max_length` keep their tail."""
    if max_length is not None:
        prompts = [p[-max_length:] for p in prompts]
    t = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), t), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, t - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, t - len(p):] = 1
    return ids, mask


def _as_ids(stop_ids: int | Sequence[int]) -> tuple[int, ...]:
    return (stop_ids,) if isinstance(stop_ids, int) else tuple(stop_ids)


def cut_at_eos(tokens: torch.Tensor, stop_ids: int | Sequence[int]) -> list[list[int]]:
    """(b, n) generated tokens → per row, the tokens up to and including the first stop token (all if none)."""
    stops = set(_as_ids(stop_ids))
    out = []
    for row in tokens.tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in stops), len(row))
        out.append(row[:end])
    return out


class SamplingProcessor:
    """The last logits processor before the sampler (Note [sampling distribution]): applies the temperature and,
    with `record`, keeps log q(token) of every sampled token."""

    def __init__(self, temperature: float, record: bool) -> None:
        self.temperature, self.record = temperature, record
        self.previous: torch.Tensor | None = None  # (b, vocab) log q of the step whose token is not yet known
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = sampling_logits(scores, self.temperature)
        if self.record:
            self._take(input_ids[:, -1])
            self.previous = F.log_softmax(scores.float(), dim=-1)
        return scores

    def _take(self, tokens: torch.Tensor) -> None:
        if self.previous is not None:
            self.steps.append(self.previous.gather(1, tokens[:, None].to(self.previous.device)).squeeze(1).cpu())
            self.previous = None

    def logprobs(self, generated: torch.Tensor) -> torch.Tensor:
        """(b, n) log q of the generated tokens (call once, after `generate`)."""
        self._take(generated[:, -1])
        return torch.stack(self.steps, 1) if self.steps else torch.zeros(generated.size(0), 0)


# every option transformers would otherwise fill from the model's generation_config or its defaults (top-k 50):
# those that change greedy decoding too, and the sampling warpers
_NEUTRAL = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0, num_beams=1)
_NEUTRAL_SAMPLING = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, epsilon_cutoff=0.0,
                         eta_cutoff=0.0)


@torch.no_grad()
def generate_responses(model, prompts: list[list[int]], pad_id: int, stop_ids: int | Sequence[int],
                       settings: GenerationSettings = GenerationSettings()) -> Generated:
    """Generate for a batch of tokenized prompts, stopping at any of `stop_ids` (EOS, the chat template's end of
    turn); returns each response's token ids and, when sampling, their log-probs under the sampled distribution."""
    from transformers import LogitsProcessorList

    device = next(model.parameters()).device
    stops = list(_as_ids(stop_ids))
    ids, mask = left_pad(prompts, pad_id, settings.max_prompt_length)
    sampler = SamplingProcessor(settings.sampling_temperature, record=settings.do_sample)
    kwargs = dict(_NEUTRAL, max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                  pad_token_id=pad_id, eos_token_id=stops, use_cache=True)
    if settings.do_sample:
        kwargs.update(_NEUTRAL_SAMPLING, top_k=settings.top_k, top_p=settings.top_p,
                      logits_processor=LogitsProcessorList([sampler]))
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
    generated = out[:, ids.size(1):].cpu()
    responses = cut_at_eos(generated, stops)
    if not settings.do_sample:
        return Generated(responses, None)
    logq = sampler.logprobs(generated)
    return Generated(responses, [logq[i, : len(r)].tolist() for i, r in enumerate(responses)])
