"""Batched vs one-at-a-time greedy generation on the tiny NF4 model (target: batched >= 4x faster), same prompts,
same settings, measured side by side in one process.

    python -m benchmarks.generation [--prompts 32] [--batch 16] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from tl_lightning.checkpoints import load_tokenizer
from tl_lightning.data.steps import all_step_prompts
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.data.toolworld import ToolWorld
from tl_lightning.format.render import PaperFormat
from tl_lightning.models.generation import GenerationSettings, generate_responses
from tl_lightning.models.loading import ModelSettings, load_for_inference
from tl_lightning.models.tiny import build_tiny_checkpoint


def run(n_prompts: int, batch: int, new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        ckpt = str(build_tiny_checkpoint(Path(d) / "tiny"))
        tok = load_tokenizer(ckpt)
        model = load_for_inference(ModelSettings(checkpoint=ckpt, quantization="nf4", compute_dtype="float32",
                                                 lora=None))
        prompts = all_step_prompts(ToolWorld(seed=3).split("bench", n_prompts), first_only=True)[:n_prompts]
        ids = prompt_token_ids(prompts, PaperFormat(tok.eos_token), tok)
        ids.sort(key=len)
        settings = GenerationSettings(max_new_tokens=new_tokens)
        no_eos = -1  # an id never generated: every response runs to max_new_tokens in both modes
        generate_responses(model, ids[:2], tok.pad_token_id, no_eos, settings)  # warm-up
        out = {}
        for name, bs in (("batch_1", 1), (f"batch_{batch}", batch)):
            t = time.perf_counter()
            n_tok = 0
            for i in range(0, len(ids), bs):
                n_tok += sum(len(r) for r in generate_responses(model, ids[i:i + bs], tok.pad_token_id, no_eos,
                                                                settings))
            dt = time.perf_counter() - t
            out[name] = {"seconds": round(dt, 3), "new_tokens": n_tok, "tokens_per_s": round(n_tok / dt, 1)}
        out["speedup"] = round(out["batch_1"]["seconds"] / out[f"batch_{batch}"]["seconds"], 2)
        out["setup"] = {"prompts": len(ids), "mean_prompt_tokens": round(sum(map(len, ids)) / len(ids), 1),
                        "new_tokens_each": new_tokens, "model": "tiny Llama h64 L2, NF4",
                        "threads": torch.get_num_threads()}
        return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    a = ap.parse_args()
    print(json.dumps(run(a.prompts, a.batch, a.new_tokens), indent=1))
