"""Rollout engines side by side: generated tokens per second of each option on the same prompts, interleaved.

    OMP_NUM_THREADS=1 python -m benchmarks.rollout [--shapes grpo ppo tiny] [--reps 3] [--options loop+dense ...]

Shapes (issue #26): `grpo`: SmolLM2-135M NF4 + LoRA, 2 ToolWorld prompts x 8 samples, 64 new tokens, T 1;
`ppo`: the same model, 8 distinct prompts x 1 sample; `tiny`: the test model, 8 prompts x 4 samples. Options:
`hf` (transformers' generate on the whole batch, the path before the engine); `loop` (`DecodeLoop(dense_copy=
"none")`: shared prefixes, length buckets, finished rows leave, in-place KV cache); `loop+dense` (the same on a
dense fp32 copy rebuilt every call, refresh included: what the default `DecodeLoop()` does on CPU);
`loop+dense copied` (the same with every sample decoding on its own copy of the prompt's keys and values,
`read_prefix_once=False`: the default before it read them once per step); `loop+dense rows` (the copy's linear
weights stored row-major, `column_major_copy=False`: the default before they were stored column-major);
`loop+dense bf16` (a bfloat16 copy: for CPUs with native bf16 matrix units) and `loop+dense bf16 rows`. Each
repetition runs every option once, in turn, with the same seed; medians and ranges are printed as JSON with the
machine's load average. The SmolLM2 shapes need `runs/smollm2-135m` (`python -m tl_lightning.models.pretrained
smollm2 runs/smollm2-135m`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

OPTIONS = {"loop": {"dense_copy": "none"}, "loop+dense": {"dense_copy": "float32"},
           "loop+dense rows": {"dense_copy": "float32", "column_major_copy": False},
           "loop+dense copied": {"dense_copy": "float32", "read_prefix_once": False},
           "loop+dense bf16": {"dense_copy": "bfloat16"},
           "loop+dense bf16 rows": {"dense_copy": "bfloat16", "column_major_copy": False}}
"""Option name -> its `DecodeLoop` settings; `hf` (`HFGenerate`) is the reference."""


def _policy(checkpoint: str):
    from tl_lightning.models.loading import ModelSettings, load_policy

    return load_policy(ModelSettings(checkpoint=checkpoint, quantization="nf4", compute_dtype="float32"), "cpu").eval()


def _prompts(tok, n: int, copies: int) -> list[list[int]]:
    from tl_lightning.data.steps import all_step_prompts
    from tl_lightning.data.tokenization import prompt_token_ids
    from tl_lightning.data.toolworld import ToolWorld
    from tl_lightning.format.render import make_renderer

    fmt = "chat_template" if tok.chat_template else "paper"
    ids = prompt_token_ids(all_step_prompts(ToolWorld().split("val", 20))[:n], make_renderer(fmt, tok), tok)
    return [p for p in ids for _ in range(copies)]


def run_shape(model, tok, prompts: list[list[int]], new_tokens: int, reps: int, only: list[str] | None = None) -> dict:
    from tl_lightning.format.render import stop_token_ids
    from tl_lightning.models.engine import DecodeLoop, HFGenerate
    from tl_lightning.models.generation import GenerationSettings

    settings = GenerationSettings(max_new_tokens=new_tokens, do_sample=True, temperature=1.0)
    stops = stop_token_ids(tok)
    # a fresh engine per call: the dense copy is rebuilt every time (as after each RL update), its cost included
    engines = {"hf": HFGenerate, **{name: (lambda kw=kw: DecodeLoop(**kw)) for name, kw in OPTIONS.items()
                                    if only is None or name in only}}
    options = {name: (lambda make=make: make().generate(model, prompts, tok.pad_token_id, stops, settings))
               for name, make in engines.items()}
    rates: dict[str, list[float]] = {k: [] for k in options}
    for rep in range(reps):
        for name, generate in options.items():
            torch.manual_seed(rep)
            start = time.perf_counter()
            out = generate()
            rates[name].append(sum(len(r) for r in out.responses) / (time.perf_counter() - start))
    result = {name: {"tokens_per_s_median": round(statistics.median(r), 2),
                     "range": [round(min(r), 2), round(max(r), 2)]} for name, r in rates.items()}
    base = statistics.median(rates["hf"])
    for name in options:
        result[name]["speedup_vs_hf"] = round(statistics.median(rates[name]) / base, 2)
    result["prompt_tokens"] = sorted({len(p) for p in prompts})
    result["rows"] = len(prompts)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["grpo", "ppo", "tiny"], choices=["grpo", "ppo", "tiny"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--options", nargs="+", default=None, choices=list(OPTIONS),
                    help="the engine options to time (default all); `hf`, the reference, always runs")
    ap.add_argument("--smollm2", default="runs/smollm2-135m")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from tl_lightning.core.checkpoints import load_tokenizer

    out = {"threads": torch.get_num_threads(), "load_avg_before": os.getloadavg()}
    for shape in args.shapes:
        if shape == "tiny":
            import tempfile

            from tl_lightning.models.tiny import build_tiny_checkpoint

            ckpt = str(build_tiny_checkpoint(tempfile.mkdtemp() + "/tiny", hidden=64, layers=2, vocab_size=1024))
            n, copies, new = 8, 4, 32
        else:
            ckpt = args.smollm2
            n, copies, new = (2, 8, 64) if shape == "grpo" else (8, 1, 64)
        tok = load_tokenizer(ckpt)
        out[shape] = run_shape(_policy(ckpt), tok, _prompts(tok, n, copies), new, args.reps, args.options)
        print(json.dumps({shape: out[shape]}), flush=True)
    out["load_avg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
