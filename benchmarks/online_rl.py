"""Online multi-turn GRPO against single-step IRM GRPO on SmolLM2-135M (CPU), issue #27: held-out ToolWorld task
success (whole episodes: call, read, call again or finish) before and after each, from the plain SFT adapter.

    OMP_NUM_THREADS=1 python -m benchmarks.online_rl [--out runs/online_study] [--test-tasks 100]
    # or on two cores, after the SFT stage: --part single & --part online

Stages (each writes `<out>/<stage>.json`; a rerun skips what is done): plain SFT (`configs/smollm2/sft.yaml`
without MAE, uniform weights, as `benchmarks.real_model` trains it); greedy test episodes of that adapter
(`main.py test --config configs/smollm2/online_grpo.yaml`); online GRPO as shipped in that config; single-step
GRPO (`configs/smollm2/grpo.yaml`: ToolWorld step prompts, the IRM reward) for as many iterations as brings its
sampled tokens to the online run's (estimated from the before-test's tokens per reply; both totals are
reported); greedy test episodes of both adapters on the same held-out tasks. Prints the table with 95% bootstrap
intervals and the paired per-task differences.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from benchmarks.real_model.run import CHECKPOINT, stage
from benchmarks.real_model.stages import CONFIGS, Scale, _fit, log, metric_curve, sft
from tl_lightning.metrics.intervals import bootstrap_interval

ONLINE = "online_grpo.yaml"
GROUP = 4  # both configs' GRPO group_size


def test_episodes(adapter: str, tasks: int, run_dir: Path, name: str) -> dict:
    """Greedy episodes of `adapter` on the first `tasks` held-out ToolWorld test tasks."""
    from main import cli_main

    out = run_dir / name
    shutil.rmtree(out, ignore_errors=True)  # a half-finished earlier attempt
    cli_main(["test", "--config", str(CONFIGS / ONLINE), f"--model.init_args.policy.adapter={adapter}",
              f"--data.init_args.test_tasks={tasks}", f"--trainer.default_root_dir={out}",
              f"--trainer.logger.init_args.save_dir={out}", "--trainer.logger.init_args.name=test"])
    return json.loads((out / "test" / "version_0" / "episodes.json").read_text())


def sampled_tokens(log_dir: Path, rows: int) -> int:
    """Tokens the policy sampled over a run: the mean sampled length per row of every iteration × rows."""
    return round(sum(metric_curve(log_dir, "rollout/response_length")) * rows)


def online(adapter: str, run_dir: Path) -> dict:
    log_dir = _fit(ONLINE, "paper", [f"--model.init_args.policy.adapter={adapter}"], run_dir, "online")
    return {"adapter": str(log_dir / "hf" / "final"), "sampled_tokens": sampled_tokens(log_dir, 2 * GROUP),
            "success": metric_curve(log_dir, "episode/success_rate"), "reward": metric_curve(log_dir, "reward/mean")}


def single_step(adapter: str, run_dir: Path, budget: int, tokens_per_reply: float) -> dict:
    iterations = max(1, math.ceil(budget / (2 * GROUP * tokens_per_reply)))
    data = {"format": "toolworld", "split": "train", "size": 200, "seed": 0}
    log_dir = _fit("grpo.yaml", "paper", [f"--model.init_args.policy.adapter={adapter}",
                                          f"--trainer.limit_train_batches={iterations}",
                                          f"--data.init_args.source={json.dumps(data)}"], run_dir, "single_step")
    return {"adapter": str(log_dir / "hf" / "final"), "iterations": iterations,
            "sampled_tokens": sampled_tokens(log_dir, 2 * GROUP), "reward": metric_curve(log_dir, "reward/mean")}


def paired(a: list[float], b: list[float]) -> dict:
    diff = [y - x for x, y in zip(a, b)]
    lo, hi = bootstrap_interval(diff)
    return {"mean": sum(diff) / len(diff), "ci95": [lo, hi], "separates": lo > 0 or hi < 0}


def run_stages(out: Path, test_tasks: int, part: str) -> None:
    """`part` "all", or one of two halves that share no stage and run side by side on two cores: "single" (the
    SFT adapter's test, single-step GRPO, its test) and "online" (online GRPO, its test); both need the SFT stage."""
    base = stage(out, "sft_plain", lambda: sft("plain", "paper", CHECKPOINT, Scale(), out))
    if part in ("all", "online"):
        rl = stage(out, "online", lambda: online(base["adapter"], out))
        stage(out, "test_online", lambda: test_episodes(rl["adapter"], test_tasks, out, "test_online"))
    if part in ("all", "single"):
        before = stage(out, "test_sft", lambda: test_episodes(base["adapter"], test_tasks, out, "test_sft"))
        per_reply = before["sampled_tokens"] / max(1.0, before["turns"] * before["episodes"])
        budget = stage(out, "online", lambda: online(base["adapter"], out))["sampled_tokens"] if part == "all" else \
            online_budget(out)
        single = stage(out, "single_step", lambda: single_step(base["adapter"], out, budget, per_reply))
        stage(out, "test_single_step", lambda: test_episodes(single["adapter"], test_tasks, out, "test_single_step"))


def online_budget(out: Path) -> int:
    """The online run's sampled tokens, from its log once it has run (the "single" half waits for it)."""
    import time

    while not (out / "online.json").exists():
        time.sleep(10)
    return json.loads((out / "online.json").read_text())["sampled_tokens"]


def report(out: Path) -> dict:
    """The table of whatever has been tested so far (the SFT adapter's test first), with paired differences."""
    def read(name: str) -> dict | None:
        return json.loads((out / f"{name}.json").read_text()) if (out / f"{name}.json").exists() else None

    before = read("test_sft")
    rows = {k: r for k, r in (("SFT (plain)", before), ("+ online GRPO", read("test_online")),
                              ("+ single-step IRM GRPO", read("test_single_step"))) if r is not None}
    runs = {k: r for k in ("online", "single_step") if (r := read(k)) is not None}
    return {"episodes": before["episodes"],
            "rows": {k: {m: r[m] for m in ("success_rate", "ci95", "turns", "call_rate", "failure_rate") if m in r}
                     for k, r in rows.items()},
            "sampled_tokens": {k: r["sampled_tokens"] for k, r in runs.items()},
            "paired_vs_sft": {k: paired(before["successes"], r["successes"]) for k, r in rows.items()
                              if r is not before},
            "stage_wall_min": {p.stem: round(json.loads(p.read_text()).get("stage_wall_s", 0) / 60, 1)
                               for p in sorted(out.glob("*.json")) if p.stem != "report"}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/online_study")
    ap.add_argument("--test-tasks", type=int, default=100)
    ap.add_argument("--part", choices=["all", "single", "online"], default="all",
                    help="run one half (start both, one per core, after the SFT stage) or everything in order")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    run_stages(out, a.test_tasks, a.part)
    if (out / "test_sft.json").exists():
        result = report(out)
        (out / "report.json").write_text(json.dumps(result, indent=1))
        log("report: " + json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
