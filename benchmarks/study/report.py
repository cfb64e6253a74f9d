"""The study's tables from whatever stages are done: `<out>/report.json` and `<out>/report.md`."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.study.protocol import RL_ARMS, VARIANTS, Protocol, rl_stage
from benchmarks.study.stats import METRICS, category_share, choose_lr, estimate, paired, per_item_mean, rate, summary
from tl_lightning.data.toolworld.catalog import TOOLS_BY_NAME
from tl_lightning.format.call_format import parse_calls

MECHANISMS = {"tool_hallucination": {"tool_hallucination"}, "wrong_tool": {"wrong_tool"},
              "format_error": {"format_error", "no_call"}}


def _read(out: Path, name: str) -> dict | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def collect(out: Path, p: Protocol) -> dict[str, list[dict]]:
    """Arm → the per-item scores of its runs (every finished seed)."""
    arms = {}
    for variant in VARIANTS:
        runs = [r["scores"] for s in p.seeds if (r := _read(out, f"test_{variant}_s{s}"))]
        if runs:
            arms[variant] = runs
    for arm in RL_ARMS:
        runs = [r["scores"] for s in p.rl_seeds if (r := _read(out, f"test_{rl_stage(arm, s)}"))]
        if runs:
            arms[arm] = runs
    return arms


def sweeps(out: Path, p: Protocol) -> dict[str, dict]:
    """Variant → {"val": {rate: validation TS / PI / CF}, "chosen": rate} for every variant whose sweep is done."""
    table = {}
    for variant in VARIANTS:
        runs = {lr: r for lr in p.lrs if (r := _read(out, f"sweep_{variant}_lr{lr:g}"))}
        if len(runs) == len(p.lrs):
            val = {lr: summary(r["val"]["toolworld_val"]) for lr, r in runs.items()}
            table[variant] = {"val": val, "chosen": choose_lr(val)}
    return table


def catalog_share(runs: list[list[dict]]) -> list[float]:
    """Per item, the share of runs (seeds) whose output calls a tool the item does not list (a hallucinated tool)
    that is one of ToolWorld's own, the training catalog: how far an adapter carries its training tools' names over
    to other benchmarks."""
    def from_catalog(item: dict) -> float:
        if item["category"] != "tool_hallucination":
            return 0.0
        calls = parse_calls(item.get("output") or "").calls
        return float(bool(calls) and calls[0].name in TOOLS_BY_NAME)

    return per_item_mean([[{"id": r["id"], "catalog": from_catalog(r)} for r in run] for run in runs], "catalog")


def common_sets(runs: list[dict]) -> list[str]:
    """The sets every run (seed) scored, in the first run's order: a set added to the protocol is reported for an
    arm once all its seeds have it."""
    return [name for name in runs[0] if all(name in r for r in runs)]


def arm_table(runs: list[dict]) -> dict:
    """Per set: TS / PI / CF and the mechanism rates, each with its interval; the MAE repeat rate if scored."""
    table = {}
    for name in common_sets(runs):
        if name == "mae_repeats":
            table[name] = estimate(per_item_mean([r[name] for r in runs], "repeated"))
            continue
        sets = [r[name] for r in runs]
        table[name] = {"items": len(sets[0]), "seeds": len(sets),
                       "per_seed": [summary(run) for run in sets],  # how far seeds move it, beside the interval
                       **{m: estimate(per_item_mean(sets, m)) for m in METRICS},
                       **{k: rate(sets, cats) for k, cats in MECHANISMS.items()},
                       "catalog_tool": estimate(catalog_share(sets))}
    return table


def differences(arms: dict[str, list[dict]], baseline: str = "plain") -> dict:
    """Per arm and set: the paired per-item difference against `baseline` of each metric and mechanism rate
    (seed means)."""
    if baseline not in arms:
        return {}
    base = arms[baseline]
    out = {}
    for arm, runs in arms.items():
        if arm == baseline:
            continue
        out[arm] = {}
        for name in common_sets([*base, *runs]):
            key = "repeated" if name == "mae_repeats" else None
            if key:
                out[arm][name] = {key: paired(per_item_mean([r[name] for r in base], key),
                                              per_item_mean([r[name] for r in runs], key))}
                continue
            a, b = [r[name] for r in base], [r[name] for r in runs]
            out[arm][name] = {**{m: paired(per_item_mean(a, m), per_item_mean(b, m)) for m in METRICS},
                              **{k: paired(category_share(a, cats), category_share(b, cats))
                                 for k, cats in MECHANISMS.items()}}
    return out


def rl_differences(out: Path, arms: dict[str, list[dict]]) -> dict:
    """RL's effect: each RL arm (the mean of its seeds per item) against the SFT run every seed started from (its
    variant's seed 0, the same adapter), and each reward against the paper's (`grpo_irm`), paired per item. Keys:
    "<arm> − <baseline>"."""
    out_diffs = {}
    for arm in RL_ARMS:
        run = _read(out, f"rl_{arm}") if arm in arms else None
        start = _read(out, f"test_{run['start']}_s0") if run else None
        if start is None:
            continue
        name = f"{run['start']} seed 0"
        out_diffs[f"{arm} − {name}"] = differences({name: [start["scores"]], arm: arms[arm]}, name)[arm]
        if arm != "grpo_irm" and arm.startswith("grpo") and "grpo_irm" in arms:
            out_diffs[f"{arm} − grpo_irm"] = differences({"grpo_irm": arms["grpo_irm"], arm: arms[arm]},
                                                         "grpo_irm")[arm]
    return out_diffs


def comparisons(report: dict) -> dict[str, dict]:
    """Title ("<arm> − <baseline>") → per set, the paired differences: SFT variants against plain, RL arms
    against their start and rewards against IRM."""
    return {**{f"{arm} − plain": sets for arm, sets in report["paired_vs_plain"].items()}, **report["rl_paired"]}


def wall_hours(out: Path) -> float:
    return sum(json.loads(f.read_text()).get("stage_wall_s", 0) for f in out.glob("*.json")) / 3600


def markdown(report: dict) -> str:
    lines = [f"Study wall time so far: {report['wall_hours']:.1f} h (stages summed).", ""]
    if report["sweeps"]:
        lrs = sorted({lr for s in report["sweeps"].values() for lr in s["val"]})
        lines += ["### Learning-rate sweep: validation CF (%), seed 0; the chosen rate in bold", "",
                  "| variant | " + " | ".join(f"{lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
        for variant, s in report["sweeps"].items():
            cells = [f"{100 * s['val'][lr]['cf']:.1f}" if lr in s["val"] else "" for lr in lrs]
            cells = [f"**{c}**" if lr == s["chosen"] else c for lr, c in zip(lrs, cells)]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    for arm, table in report["arms"].items():
        lines += [f"### {arm}", "", "| set | items × seeds | TS | PI | CF | hallucinated tool | of them ToolWorld's "
                  "| wrong tool | TS / CF per seed |", "|---|---|---|---|---|---|---|---|---|"]
        for name, t in table.items():
            if name == "mae_repeats":
                continue
            cells = [_cell(t[m]) for m in (*METRICS, "tool_hallucination", "catalog_tool", "wrong_tool")]
            seeds = ", ".join(f"{100 * r['ts']:.1f} / {100 * r['cf']:.1f}" for r in t["per_seed"])
            lines.append(f"| {name} | {t['items']} × {t['seeds']} | " + " | ".join(cells) + f" | {seeds} |")
        if "mae_repeats" in table:
            lines.append(f"\nRepeats of its training data's erroneous calls: {_cell(table['mae_repeats'])}")
        lines.append("")
    for title, sets in comparisons(report).items():
        lines += [f"### {title} (paired per item)", ""]
        for name, metrics in sets.items():
            lines.append(f"* {name}: " + "; ".join(
                f"{m} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                f"{' separates' if d['separates'] else ''}" for m, d in metrics.items()))
        lines.append("")
    return "\n".join(lines)


def _cell(e: dict) -> str:
    return f"{100 * e['mean']:.1f} [{100 * e['ci95'][0]:.1f}, {100 * e['ci95'][1]:.1f}]"


def plot(report: dict, path: Path, metrics: tuple[str, ...] = ("cf", "ts")) -> None:
    """A forest plot: per comparison (rows) and set, each metric's paired difference (points) with its 95%
    interval; filled where the interval excludes zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = comparisons(report)
    if not pairs:
        return
    names = list(next(iter(pairs.values())))
    names = [n for n in names if n != "mae_repeats"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 0.9 + 0.5 * len(pairs) * len(names) / 2),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for j, name in enumerate(names):
            for i, sets in enumerate(pairs.values()):
                if name not in sets:
                    continue
                d = sets[name][metric]
                y = i + (j - (len(names) - 1) / 2) * 0.8 / len(names)
                ax.errorbar(100 * d["mean"], y, xerr=[[100 * (d["mean"] - d["ci95"][0])],
                                                      [100 * (d["ci95"][1] - d["mean"])]],
                            fmt="o", color=f"C{j}", mfc=f"C{j}" if d["separates"] else "white", capsize=2,
                            label=name if i == 0 else None)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set(xlabel=f"{metric.upper()} difference (points), 95% interval", title=metric.upper())
    axes[0][0].set_yticks(range(len(pairs)), list(pairs), fontsize=8)
    axes[0][0].invert_yaxis()
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(names), fontsize=8)
    fig.suptitle("Paired per-item differences (filled: the interval excludes zero)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, p: Protocol) -> dict:
    arms = collect(out, p)
    report = {"sweeps": sweeps(out, p), "arms": {a: arm_table(r) for a, r in arms.items()},
              "paired_vs_plain": differences({a: r for a, r in arms.items() if a in VARIANTS}),
              "rl_paired": rl_differences(out, arms),
              "wall_hours": wall_hours(out)}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    plot(report, out / "differences.png")
    return report
