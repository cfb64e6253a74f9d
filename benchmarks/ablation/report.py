"""Aggregate the ablation's per-seed results into mean ± std tables (markdown) and a PNG plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

# SFT runs: directory name → (MAE, PKT)
SFT_STARTS = {"sft": (False, False), "mae": (True, False), "pkt": (False, True), "mae_pkt": (True, True)}
# the paper's ablation rows: label → (SFT run, stage); an IRM row is PPO from the SFT run with the same switches
VARIANTS = {"SFT": ("sft", "sft"), "+MAE": ("mae", "sft"), "+PKT": ("pkt", "sft"), "+IRM": ("sft", "ppo"),
            "MAE+PKT": ("mae_pkt", "sft"), "MAE+IRM": ("mae", "ppo"), "PKT+IRM": ("pkt", "ppo"),
            "MAE+PKT+IRM": ("mae_pkt", "ppo")}
ERROR_GROUPS = {"format": ("format_error", "no_call", "wrong_count"), "tool halluc.": ("tool_hallucination",),
                "wrong tool": ("wrong_tool",), "params": ("params_redundant", "params_missing", "params_hallucinated",
                "params_redundant_missing", "params_hallucinated_redundant", "params_hallucinated_missing",
                "params_hallucinated_redundant_missing"), "content": ("content_filling",)}
NOISY = ("slight", "medium", "heavy", "union")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def error_rates(metrics: dict) -> dict[str, float]:
    """Category rates summed into the table's error groups."""
    return {g: sum(metrics.get(f"rate/{c}", 0.0) for c in cats) for g, cats in ERROR_GROUPS.items()}


def collect(out: Path) -> dict[str, list[dict]]:
    """Variant label → one result per seed ({"eval": {level: metrics}, "train_s": ..., ...})."""
    rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for seed_dir in sorted(out.glob("seed*")):
        for label, (sft, stage) in VARIANTS.items():
            f = seed_dir / sft / f"{stage}.json"
            if f.exists():
                rows[label].append(json.loads(f.read_text()))
    return rows


def _fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "–"
    m, s = mean_std([v * scale for v in values])
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def tables(rows: dict[str, list[dict]]) -> str:
    """Markdown tables: clean held-out scores and errors, the error-imitation probe, CF under noise, PPO runs."""
    head = ["variant", "TS", "PI", "CF", "reward", *(f"err: {g}" for g in ERROR_GROUPS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, results in rows.items():
        clean = [r["eval"]["clean"] for r in results]
        errs = [error_rates(m) for m in clean]
        cells = [_fmt([m[k] for m in clean]) for k in ("ts", "pi", "cf")]
        cells.append(_fmt([m["reward"] for m in clean], 1.0, 2))
        cells += [_fmt([e[g] for e in errs]) for g in ERROR_GROUPS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    noise = {}
    for metric in ("ts", "cf"):
        rows_md = [f"| variant | {metric.upper()} clean | " + " | ".join(f"{metric.upper()} {n}" for n in NOISY)
                   + " | mean drop |", "|" + "---|" * 7]
        for label, results in rows.items():
            ev = [r["eval"] for r in results]
            drops = [e["clean"][metric] - statistics.fmean(e[n][metric] for n in NOISY) for e in ev]
            rows_md.append(f"| {label} | " + " | ".join(_fmt([e[n][metric] for e in ev]) for n in ("clean", *NOISY))
                           + f" | {_fmt(drops)} |")
        noise[metric] = rows_md
    probe = ["| variant | log P(corrected) − log P(erroneous), nats | erroneous attempt more likely, % |",
             "|---|---|---|"]
    for label, results in rows.items():
        ev = [r["eval"]["error_imitation"] for r in results if "error_imitation" in r["eval"]]
        probe.append(f"| {label} | {_fmt([e['mean_margin'] for e in ev], 1.0, 1)} | "
                     f"{_fmt([e['error_preferred'] for e in ev])} |")
    ppo = ["| variant | SFT train s | PPO train s | rollout reward, first 3 iterations | last 3 iterations |",
           "|---|---|---|---|---|"]
    for label, (sft, stage) in VARIANTS.items():
        if stage != "ppo" or not rows[label]:
            continue
        curves = [r["rollout_reward"] for r in rows[label]]
        starts = rows[next(k for k, v in VARIANTS.items() if v == (sft, "sft"))]
        ppo.append(f"| {label} | {_fmt([r['train_s'] for r in starts], 1.0, 0)} | "
                   f"{_fmt([r['train_s'] for r in rows[label]], 1.0, 0)} | "
                   f"{_fmt([statistics.fmean(c[:3]) for c in curves], 1.0, 2)} | "
                   f"{_fmt([statistics.fmean(c[-3:]) for c in curves], 1.0, 2)} |")
    return "\n".join(["### Held-out ToolWorld (clean), % of items (reward: mean IRM reward)", "", *lines, "",
                      "### Error imitation: does the model learn the erroneous calls? (teacher-forced, held-out "
                      "conversations where every call follows an erroneous attempt)", "", *probe, "",
                      "### Robustness: TS and CF (%) on the same items with RoTBench-style noise", "", *noise["ts"], "",
                      *noise["cf"], "",
                      "### Cost and PPO training reward", "", *ppo])


def plot(rows: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [v for v in rows if rows[v]]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4.6))
    width = 0.27
    for j, k in enumerate(("ts", "pi", "cf")):
        stats = [mean_std([r["eval"]["clean"][k] * 100 for r in rows[v]]) for v in labels]
        a.bar([i + (j - 1) * width for i in range(len(labels))], [m for m, _ in stats], width,
              yerr=[s for _, s in stats], capsize=2, label=k.upper())
    a.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    a.set_ylabel("% of held-out items")
    a.set_title("Held-out ToolWorld, greedy (mean ± std over seeds)")
    a.legend(loc="lower left")
    probe = [v for v in labels if all("error_imitation" in r["eval"] for r in rows[v])]
    stats = [mean_std([r["eval"]["error_imitation"]["mean_margin"] for r in rows[v]]) for v in probe]
    b.bar(range(len(probe)), [m for m, _ in stats], yerr=[s for _, s in stats], capsize=2,
          color=["tab:orange" if "MAE" in v else "tab:gray" for v in probe])
    b.set_xticks(range(len(probe)), probe, rotation=30, ha="right")
    b.set_ylabel("log P(corrected) − log P(erroneous), nats")
    b.set_title("Error imitation probe (higher: errors not learned)")
    levels = ("clean", *NOISY)
    for v in labels:
        stats = [mean_std([r["eval"][n]["ts"] * 100 for r in rows[v]]) for n in levels]
        c.errorbar(range(len(levels)), [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=2,
                   label=v, linestyle="--" if "IRM" in v else "-")
    c.set_xticks(range(len(levels)), levels)
    c.set_ylabel("TS %")
    c.set_title("Tool selection under RoTBench-style noise")
    c.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, docs: Path, scale, wall_s: float, quick: bool) -> str:
    rows = collect(out)
    seeds = max((len(r) for r in rows.values()), default=0)
    docs.mkdir(parents=True, exist_ok=True)
    plot(rows, docs / "ablation.png")
    setup = ", ".join(f"{k}={v}" for k, v in asdict(scale).items())
    md = "\n".join([
        "# Ablation on ToolWorld" + (" (--quick smoke run: sizes too small to mean anything)" if quick else ""), "",
        f"Reproduce: `python -m benchmarks.ablation{' --quick' if quick else ''}` "
        f"({wall_s / 60:.1f} min wall on this machine, {seeds} seed(s)). Settings: {setup}.", "",
        "Each cell is mean ± std over seeds. IRM rows are PPO runs started from the SFT row with the same MAE/PKT "
        "switches (their SFT start is that row).", "", tables(rows), "", "![ablation](ablation.png)", ""])
    (docs / "ablation.md").write_text(md)
    (docs / "ablation.json").write_text(json.dumps(rows, indent=1))
    return md
