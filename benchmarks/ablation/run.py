"""The paper's ablation at small scale: SFT / +MAE / +PKT / +IRM and their combinations on ToolWorld, several seeds.

    python -m benchmarks.ablation            # 3 seeds, writes docs/ablation.md + docs/ablation.png (~40 min, 2 cores)
    python -m benchmarks.ablation --quick    # smoke run of the whole pipeline: 1 seed, small sizes (~2 min)

Per seed, a random Llama (`tl_lightning.models.tiny`) is built; four SFT runs (MAE on/off × PKT on/off) train on
the same ToolWorld data (17% erroneous calls), and each is followed by PPO with the IRM reward. This gives the
paper's eight variants: an IRM variant's SFT start is the SFT variant with the same switches. Every model is
evaluated greedily on held-out ToolWorld, clean and at the four RoTBench noise levels (`tl_lightning.data.noise`).
Chains run as subprocesses, `--jobs` at a time; finished steps are kept, so a rerun resumes (`--fresh` restarts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

from benchmarks.ablation.chain import Scale
from benchmarks.ablation.report import SFT_STARTS, write_report
from tl_lightning.data.noise import NOISE_LEVELS
from tl_lightning.models.tiny import build_tiny_checkpoint

QUICK = Scale(seeds=1, train_size=160, epochs=4, ppo_iterations=3, rollout_batch=8, eval_conversations=12)


def chain_specs(scale: Scale, out: Path, threads: int) -> list[dict]:
    specs = []
    for seed in range(scale.seeds):
        ckpt = out / f"seed{seed}" / "base"
        if not (ckpt / "model.safetensors").exists():
            build_tiny_checkpoint(ckpt, hidden=scale.hidden, layers=scale.layers, seed=seed)
        for name, (mae, pkt) in SFT_STARTS.items():
            specs.append({"seed": seed, "mae": mae, "pkt": pkt, "checkpoint": str(ckpt), "threads": threads,
                          "run_dir": str(out / f"seed{seed}" / name), "scale": asdict(scale),
                          "levels": list(NOISE_LEVELS)})
    return specs


def run_spec(spec: dict) -> float:
    run_dir = Path(spec["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "HF_HUB_OFFLINE": "1"}
    t0 = time.time()
    with open(run_dir / "chain.log", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "benchmarks.ablation.chain", str(run_dir / "spec.json")],
                            stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        raise RuntimeError(f"chain failed (exit {rc}); see {run_dir / 'chain.log'}")
    print(f"  done: seed {spec['seed']} {run_dir.name} in {time.time() - t0:.0f}s", flush=True)
    return time.time() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, tiny sizes: checks the pipeline in minutes")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of seeds")
    ap.add_argument("--out", default=None, help="run directory (default runs/ablation or runs/ablation-quick)")
    ap.add_argument("--docs", default=None, help="where the table and plot go (default docs/ for the full run)")
    ap.add_argument("--jobs", type=int, default=2, help="chains in parallel (one CPU thread each when > 1)")
    ap.add_argument("--fresh", action="store_true", help="delete the run directory first")
    ap.add_argument("--report-only", action="store_true", help="rewrite the table and plot from finished results")
    a = ap.parse_args(argv)
    scale = QUICK if a.quick else Scale()
    if a.seeds:
        scale = replace(scale, seeds=a.seeds)
    out = Path(a.out or ("runs/ablation-quick" if a.quick else "runs/ablation"))
    docs = Path(a.docs or (out if a.quick else "docs"))
    if a.fresh:
        shutil.rmtree(out, ignore_errors=True)
    record = out / "run.json"
    if not a.report_only:
        threads = 1 if a.jobs > 1 else (os.cpu_count() or 1)
        t0 = time.time()
        specs = chain_specs(scale, out, threads)
        print(f"ablation: {len(specs)} chains (SFT → eval → PPO → eval), {a.jobs} at a time, logs under {out}",
              flush=True)
        with ThreadPoolExecutor(a.jobs) as pool:
            list(pool.map(run_spec, specs))
        record.write_text(json.dumps({"wall_s": round(time.time() - t0, 1), "jobs": a.jobs, "scale": asdict(scale)}))
    if not record.exists():
        raise SystemExit(f"error: no finished ablation run in {out} (run without --report-only first)")
    wall = json.loads(record.read_text())["wall_s"]
    md = write_report(out, docs, scale, wall_s=wall, quick=a.quick)
    print(md)
    print(f"wrote {docs / 'ablation.md'} and {docs / 'ablation.png'} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
