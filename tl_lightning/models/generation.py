"""Batched generation for rollouts and evaluation: left padding, KV cache, greedy or sampling, stop at EOS.

Pure helpers around `model.generate`: `left_pad` builds the batch, `generate_responses` returns the response token
ids of each prompt cut after the first EOS (the EOS kept, so the stop decision can be scored).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GenerationSettings:
    """Decoding settings."""

    max_new_tokens: int = 256
    """Upper bound on response length (paper PPO: 512)."""
    do_sample: bool = False
    """Greedy (the paper's rollouts and our evaluation) or sampling."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_prompt_length: int = 8192
    """Longer prompts keep their last tokens (the paper keeps the last 8191)."""


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


def cut_at_eos(tokens: torch.Tensor, eos_id: int) -> list[list[int]]:
    """(b, n) generated tokens → per row, the tokens up to and including the first EOS (all if none)."""
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return out


@torch.no_grad()
def generate_responses(model, prompts: list[list[int]], pad_id: int, eos_id: int,
                       settings: GenerationSettings = GenerationSettings()) -> list[list[int]]:
    """Generate for a batch of tokenized prompts; returns each response's token ids (cut after the first EOS)."""
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, settings.max_prompt_length)
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample, pad_token_id=pad_id,
                  eos_token_id=eos_id, use_cache=True)
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
    return cut_at_eos(out[:, ids.size(1):].cpu(), eos_id)
