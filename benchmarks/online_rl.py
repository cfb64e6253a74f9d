"""Online multi-turn GRPO against single-step IRM GRPO on SmolLM2-135M (CPU), issue #27: held-out ToolWorld task
success (whole episodes: call, read, call again or finish) before and after each, from the plain SFT adapter.

    OMP_NUM_THREADS=1 python -m benchmarks.online_rl [--out runs/online_study] [--test-tasks 100]

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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/online_study")
    ap.add_argument("--test-tasks", type=int, default=100)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    base = stage(out, "sft_plain", lambda: sft("plain", "paper", CHECKPOINT, Scale(), out))
    before = stage(out, "test_sft", lambda: test_episodes(base["adapter"], a.test_tasks, out, "test_sft"))
    rl = stage(out, "online", lambda: online(base["adapter"], out))
    per_reply = before["sampled_tokens"] / max(1, before["turns"] * before["episodes"])
    single = stage(out, "single_step", lambda: single_step(base["adapter"], out, rl["sampled_tokens"], per_reply))
    after = {name: stage(out, f"test_{name}", lambda r=r, name=name: test_episodes(r["adapter"], a.test_tasks, out,
                                                                                   f"test_{name}"))
             for name, r in (("online", rl), ("single_step", single))}
    rows = {"SFT (plain)": before, "+ online GRPO": after["online"], "+ single-step IRM GRPO": after["single_step"]}
    report = {"episodes": before["episodes"],
              "rows": {k: {m: r[m] for m in ("success_rate", "ci95", "turns", "call_rate", "failure_rate")
                           if m in r} for k, r in rows.items()},
              "sampled_tokens": {"online": rl["sampled_tokens"], "single_step": single["sampled_tokens"]},
              "single_step_iterations": single["iterations"],
              "paired_vs_sft": {k: paired(before["successes"], r["successes"]) for k, r in rows.items()
                                if k != "SFT (plain)"},
              "wall_min": round(sum(json.loads(p.read_text()).get("stage_wall_s", 0) for p in out.glob("*.json"))
                                / 60, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    log("report: " + json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
