"""Where one `DecodeLoop` call spends its time on a whole benchmark set: prefill and decode, with the
slowest prefill forwards (issue #26: why the evaluation is not faster).

    OMP_NUM_THREADS=1 python -m benchmarks.engine_profile [--prefill-tokens 2048] [--merge-decode-gib 1.0]
        [--path rotbench/Data/First_Turn/clean.json] [--max-prompt-length 2048] [--limit N]

SmolLM2-135M zero-shot (NF4, the engine's dense fp32 copy), greedy, 64 new tokens, paper format, every item of the
set in one `generate` call, as `configs/smollm2/eval.yaml` runs it. Prints JSON: seconds per stage, prefill forwards
(rows, tokens, cached length, seconds) and decode steps (rows, longest own cache of a part). Needs `runs/smollm2-135m`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import tl_lightning.models.engine as engine_module
from tl_lightning.core.checkpoints import load_tokenizer
from tl_lightning.data.loaders import load_source
from tl_lightning.data.tokenization import prompt_token_ids
from tl_lightning.format.render import PaperFormat, stop_token_ids
from tl_lightning.models.generation import GenerationSettings
from tl_lightning.models.loading import ModelSettings, load_for_inference

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _timed(name: str, fn, seconds: dict):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return out
    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default="rotbench/Data/First_Turn/clean.json", help="RoTBench file, under ../shared/data")
    ap.add_argument("--prefill-tokens", type=int, default=2048)
    ap.add_argument("--merge-decode-gib", type=float, default=1.0, help="0: every bucket decodes alone")
    ap.add_argument("--max-prompt-length", type=int, default=2048, help="as configs/smollm2/eval.yaml")
    ap.add_argument("--limit", type=int, default=None, help="the first N items (default: all)")
    a = ap.parse_args()
    checkpoint = "runs/smollm2-135m"
    tok = load_tokenizer(checkpoint)
    model = load_for_inference(ModelSettings(checkpoint=checkpoint, quantization="nf4", compute_dtype="float32",
                                             lora=None))
    items = list(load_source("rotbench", SHARED / a.path))[:a.limit]
    ids = prompt_token_ids(items, PaperFormat(tok.eos_token), tok)
    seconds: dict[str, float] = {}
    forwards: list[tuple[int, int, int, float]] = []
    forward, step = engine_module.forward, engine_module.DecodeBatch.forward

    def recorded(model, step_ids, mask, cache):
        start = time.perf_counter()
        out = forward(model, step_ids, mask, cache)
        forwards.append((step_ids.size(0), step_ids.size(1), mask.size(1), time.perf_counter() - start))
        return out

    def recorded_step(batch, model, step_ids):
        start = time.perf_counter()
        out = step(batch, model, step_ids)
        forwards.append((step_ids.size(0), 1, max(p.mask.size(1) for p in batch.parts), time.perf_counter() - start))
        return out

    engine_module.forward, engine_module.DecodeBatch.forward = recorded, recorded_step
    for name in ("_prefill", "_decode"):
        setattr(engine_module, name, _timed(name.strip("_"), getattr(engine_module, name), seconds))
    engine = engine_module.DecodeLoop(prefill_tokens=a.prefill_tokens, merge_decode_gib=a.merge_decode_gib or None)
    engine.sampling_model(model)  # the dense copy, built before timing
    settings = GenerationSettings(max_new_tokens=64, max_prompt_length=a.max_prompt_length)
    start = time.perf_counter()
    out = engine.generate(model, ids, tok.pad_token_id, stop_token_ids(tok), settings)
    total = time.perf_counter() - start
    prefills = [f for f in forwards if f[1] > 1]
    steps = [f for f in forwards if f[1] == 1]
    print(json.dumps({
        "set": a.path, "items": len(ids), "prefill_tokens": a.prefill_tokens, "merge_decode_gib": a.merge_decode_gib,
        "seconds": {"generate": round(total, 1), **{k: round(v, 1) for k, v in seconds.items()}},
        "prefilled_tokens": sum(r * t for r, t, _, _ in prefills), "prefill_forwards": len(prefills),
        "slowest_prefills (rows, tokens, cached, s)": [(r, t, c, round(s, 2)) for r, t, c, s in
                                                       sorted(prefills, key=lambda f: -f[3])[:5]],
        "decode_steps": len(steps), "decoded_row_steps": sum(r for r, *_ in steps),
        "new_tokens": sum(map(len, out.responses)), "load_average": os.getloadavg()}, indent=1))


if __name__ == "__main__":
    main()
