"""How far the RL learner's log-probs are from the distribution that sampled, before and after #24: the same
prompts and model, sampled at one temperature, side by side in one process.

* `before`: transformers' sampler as we called it until #24 (its temperature warper and its default top-k 50),
  scored by a learner at temperature 1, as the update scored rollouts then.
* `now`: `models.generation.generate_responses` (our temperature, no truncation, log q recorded by the sampler),
  scored by a learner at the sampling temperature (`objectives.chunked.sampling_logits`).
* `engine float32` / `engine bfloat16`: the rollout engine (`DecodeLoop`) sampling on its dense copy in that dtype
  (dequantized base, LoRA merged), scored by the same learner: what the copy costs in agreement (issue #26).

Printed per side: mean and max |log q − log π| over sampled tokens (the `rollout/logprob_gap` metric).

    OMP_NUM_THREADS=1 python -m benchmarks.logprob_gap [--checkpoint runs/smollm2-135m] [--prompts 8]
        [--new-tokens 32] [--temperature 0.8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.format.render import ChatTemplateFormat, stop_token_ids
from tl_lightning.models.engine import DecodeLoop
from tl_lightning.models.generation import GenerationSettings, generate_responses, left_pad
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.objectives.chunked import sampling_logits


@torch.no_grad()
def learner_logprobs(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                     temperature: float) -> list[torch.Tensor]:
    """log π of each response token, one full forward per sequence (no padding: nothing to disagree about)."""
    out = []
    for p, r in zip(prompts, responses):
        ids = torch.tensor([p + r])
        logits = model(input_ids=ids).logits[0, len(p) - 1: -1].float()
        out.append(F.log_softmax(sampling_logits(logits, temperature), -1).gather(1, torch.tensor(r)[:, None])[:, 0])
    return out


@torch.no_grad()
def sample_before(model, prompts: list[list[int]], pad_id: int, stops: tuple[int, ...], new_tokens: int,
                  temperature: float) -> tuple[list[list[int]], list[torch.Tensor]]:
    """The pre-#24 call: transformers' warpers (temperature, default top-k 50) and their processed scores = log q."""
    ids, mask = left_pad(prompts, pad_id)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=True,
                         temperature=temperature, top_p=1.0, pad_token_id=pad_id, eos_token_id=list(stops),
                         output_scores=True, return_dict_in_generate=True)
    gen = out.sequences[:, ids.size(1):]
    logq = torch.stack([F.log_softmax(s.float(), -1).gather(1, gen[:, k:k + 1])[:, 0]
                        for k, s in enumerate(out.scores)], 1)
    responses, logqs = [], []
    for i, row in enumerate(gen.tolist()):
        n = next((k + 1 for k, t in enumerate(row) if t in stops), len(row))
        responses.append(row[:n])
        logqs.append(logq[i, :n])
    return responses, logqs


def gap(logq: list[torch.Tensor], logp: list[torch.Tensor]) -> dict:
    diffs = torch.cat([(q - p).abs() for q, p in zip(logq, logp)])
    return {"mean": float(f"{diffs.mean().item():.3g}"), "max": float(f"{diffs.max().item():.3g}"),
            "tokens": diffs.numel()}


def run(checkpoint: str, n_prompts: int, new_tokens: int, temperature: float) -> dict:
    if not Path(checkpoint).is_dir():
        from tl_lightning.models.pretrained import SmolLM2

        SmolLM2().build(Path(checkpoint))
    tok = load_tokenizer(checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=checkpoint, quantization="nf4", compute_dtype="float32",
                                             lora=None))
    prompts = all_step_prompts(ToolWorld(seed=3).split("bench", n_prompts), first_only=True)[:n_prompts]
    ids = prompt_token_ids(prompts, ChatTemplateFormat(tok), tok)
    stops = stop_token_ids(tok)
    torch.manual_seed(0)
    resp, logq = sample_before(model, ids, tok.pad_token_id, stops, new_tokens, temperature)
    before = gap(logq, learner_logprobs(model, ids, resp, tok.pad_token_id, 1.0))
    torch.manual_seed(0)
    settings = GenerationSettings(max_new_tokens=new_tokens, do_sample=True, temperature=temperature)
    out = generate_responses(model, ids, tok.pad_token_id, stops, settings)
    now = gap([torch.tensor(x) for x in out.logprobs],
              learner_logprobs(model, ids, out.responses, tok.pad_token_id, temperature))
    engines = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        out = DecodeLoop(dense_copy=dtype).generate(model, ids, tok.pad_token_id, stops, settings)
        engines[f"engine {dtype}"] = gap([torch.tensor(x) for x in out.logprobs],
                                         learner_logprobs(model, ids, out.responses, tok.pad_token_id, temperature))
    return {"checkpoint": checkpoint, "prompts": n_prompts, "new_tokens": new_tokens, "temperature": temperature,
            "before": before, "now": now, **engines}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="runs/smollm2-135m")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=0.8)
    a = ap.parse_args()
    print(json.dumps(run(a.checkpoint, a.prompts, a.new_tokens, a.temperature), indent=2))


if __name__ == "__main__":
    main()
