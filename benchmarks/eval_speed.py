"""`main.py test` wall time, today's path against the rollout engine, on the same benchmark set (issue #26 (d)).

    OMP_NUM_THREADS=1 python -m benchmarks.eval_speed [--path rotbench/Data/First_Turn/clean.json] [--limit N]
        [--options before batch8 after padded copied rows bf16]

Runs `python main.py test --config configs/smollm2/eval.yaml` once per option on one set, one process at a time,
one torch thread each:
* `before`: the path before the engine (`HFGenerate`: transformers' generate on batches of 8 in the file's order,
  each padded to its longest prompt);
* `batch8`: `DecodeLoop` on batches of 8 in prompt order (shared prefixes prefilled once, finished rows leave, a
  dense fp32 sampling copy): the default until the engine planned over the whole set;
* `after`: the shipped config: the engine gets the whole set at once (`batch_size: 128`), prefills it in buckets
  of at most 2,048 tokens with every shared prefix once, and decodes the buckets together (`merge_decode_gib`);
  each prompt (or shared prefix) is prefilled on its own, unpadded, with the causal attention kernel;
* `padded`: `after` with each bucket prefilled as one padded batch (`unpadded_prefill: false`);
* `copied`: `after` with every row decoding on its own copy of its shared prefix (`read_prefix_once: false`);
* `rows`: `after` with the dense copy's linear weights stored row-major (`column_major_copy: false`);
* `bf16`: `after` on a bfloat16 dense copy (`dense_copy: bfloat16`): fast only on CPUs with native bf16 matrix
  units (AMX); its outputs differ from fp32 by rounding, so the identical-output count is the agreement.
Prints, as JSON, each run's wall time (model loading included), the scores of its summary.json and, against the
first option, how many outputs are identical item by item, with the machine's load average. Needs
`runs/smollm2-135m` (`python -m tl_lightning.models.pretrained smollm2 runs/smollm2-135m`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTIONS = {"before": ["--model.init_args.engine=tl_lightning.models.engine.HFGenerate", "--data.init_args.order=file",
                      "--data.init_args.batch_size=8"],
           "batch8": ["--model.init_args.engine=" + json.dumps({"class_path": "tl_lightning.models.engine.DecodeLoop",
                                                                 "init_args": {"merge_decode_gib": None}}),
                      "--data.init_args.batch_size=8"],
           "after": [],
           "padded": ["--model.init_args.engine.init_args.unpadded_prefill=false"],
           "copied": ["--model.init_args.engine.init_args.read_prefix_once=false"],
           "rows": ["--model.init_args.engine.init_args.column_major_copy=false"],
           "bf16": ["--model.init_args.engine.init_args.dense_copy=bfloat16"]}


def run(name: str, path: str, limit: int | None, out: Path) -> dict:
    benchmark = {"name": "set", "format": "rotbench" if path.startswith("rotbench") else "toolalpaca", "path": path}
    cmd = [sys.executable, "main.py", "test", "--config", "configs/smollm2/eval.yaml",
           f"--data.init_args.benchmarks=[{json.dumps(benchmark)}]", f"--data.init_args.limit={limit or 'null'}",
           f"--model.init_args.output_dir={out / name}", *OPTIONS[name]]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / name / "summary.json").read_text())["set"]
    lines = (out / name / "predictions" / "set.jsonl").read_text().splitlines()
    outputs = {r["id"]: r["output"] for r in map(json.loads, lines)}
    return {"seconds": round(seconds, 1), "summary": summary, "outputs": outputs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", default="rotbench/Data/First_Turn/clean.json", help="set, under ../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="first N items (default: all)")
    parser.add_argument("--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS),
                        help="what to run, in order; the first is the reference")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: run(name, args.path, args.limit, Path(tmp)) for name in args.options}
    first = runs[args.options[0]]
    report = {name: {"seconds": r["seconds"], "summary": r["summary"],
                     "speedup": round(first["seconds"] / r["seconds"], 2),
                     "identical_outputs": sum(v == r["outputs"].get(k) for k, v in first["outputs"].items()),
                     "same_scores": r["summary"] == first["summary"]} for name, r in runs.items()}
    print(json.dumps({"set": args.path, "items": len(first["outputs"]), "reference": args.options[0],
                      "load_average": os.getloadavg(), **report}, indent=1))


if __name__ == "__main__":
    main()
