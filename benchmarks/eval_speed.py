"""`main.py test` wall time, today's path against the rollout engine, on the same benchmark set (issue #26 (d)).

    OMP_NUM_THREADS=1 python -m benchmarks.eval_speed [--path rotbench/Data/First_Turn/clean.json] [--limit N]

Runs `python main.py test --config configs/smollm2/eval.yaml` twice on one set, one process at a time, one torch
thread each: `before` is the path before the engine (`HFGenerate`: transformers' generate on batches of 8 in the
file's order, each padded to its longest prompt); `after` is the default (`DecodeLoop`: batches in prompt order,
shared prefixes prefilled once, finished rows leave, a dense fp32 sampling copy). Prints, as JSON, each run's wall
time (model loading included), the scores of its summary.json and how many outputs are identical item by item,
with the machine's load average. Needs `runs/smollm2-135m` (`python -m tl_lightning.models.pretrained smollm2
runs/smollm2-135m`).
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

OPTIONS = {"before": ["--model.init_args.engine=tl_lightning.models.engine.HFGenerate", "--data.init_args.order=file"],
           "after": []}


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = {name: run(name, args.path, args.limit, Path(tmp)) for name in OPTIONS}
    before, after = runs["before"], runs["after"]
    same = sum(before["outputs"][k] == after["outputs"].get(k) for k in before["outputs"])
    print(json.dumps({"set": args.path, "items": len(before["outputs"]), "load_average": os.getloadavg(),
                      **{name: {"seconds": r["seconds"], "summary": r["summary"]} for name, r in runs.items()},
                      "speedup": round(before["seconds"] / after["seconds"], 2),
                      "identical_outputs": same, "same_scores": before["summary"] == after["summary"]}, indent=1))


if __name__ == "__main__":
    main()
