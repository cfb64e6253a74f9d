"""Batched vs one-at-a-time greedy generation on the tiny NF4 model (target: batched >= 4x faster), same prompts,
same settings, side by side in one process: `--rounds` repetitions with the two sides interleaved (the order
alternating between rounds), reported as medians with their range, and the speedup of each round.

    python -m benchmarks.generation [--prompts 32] [--batch 16] [--new-tokens 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.format.render import PaperFormat
from tl_lightning.models.generation import GenerationSettings, generate_responses
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.models.tiny import build_tiny_checkpoint


def _time(model, ids: list[list[int]], bs: int, tok, settings: GenerationSettings) -> tuple[float, int]:
    no_eos = -1  # an id never generated: every response runs to max_new_tokens in both modes
    t = time.perf_counter()
    n_tok = 0
    for i in range(0, len(ids), bs):
        n_tok += sum(len(r) for r in generate_responses(model, ids[i:i + bs], tok.pad_token_id, no_eos,
                                                           settings).responses)
    return time.perf_counter() - t, n_tok


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def run(n_prompts: int, batch: int, new_tokens: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny"))
        tok = load_tokenizer(ckpt)
        model = load_for_inference(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                                 lora=None))
        prompts = all_step_prompts(ToolWorld(seed=3).split("bench", n_prompts), first_only=True)[:n_prompts]
        ids = prompt_token_ids(prompts, PaperFormat(tok.eos_token), tok)
        ids.sort(key=len)
        settings = GenerationSettings(max_new_tokens=new_tokens)
        _time(model, ids[:2], 2, tok, settings)  # warm-up
        sides = {"batch_1": 1, f"batch_{batch}": batch}
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        n_tok = {}
        for r in range(rounds):
            for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):  # alternate which side goes first
                dt, n_tok[name] = _time(model, ids, sides[name], tok, settings)
                seconds[name].append(dt)
        out = {name: {"seconds": _spread(s), "new_tokens": n_tok[name],
                      "tokens_per_s_median": round(n_tok[name] / statistics.median(s), 1)}
               for name, s in seconds.items()}
        per_round = [a / b for a, b in zip(seconds["batch_1"], seconds[f"batch_{batch}"])]
        out["speedup"] = _spread(per_round)
        out["setup"] = {"prompts": len(ids), "mean_prompt_tokens": round(sum(map(len, ids)) / len(ids), 1),
                        "new_tokens_each": new_tokens, "model": "tiny Llama h64 L2, NF4", "rounds": rounds,
                        "threads": torch.get_num_threads()}
        return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    print(json.dumps(run(a.prompts, a.batch, a.new_tokens, a.rounds), indent=1))
