"""The real-model benchmark's report: markdown tables and a PNG from the stage results in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.real_model.stages import SET_NAMES, STYLES

ERROR_GROUPS = {"format": ("format_error", "no_call", "wrong_count"), "tool halluc.": ("tool_hallucination",),
                "wrong tool": ("wrong_tool",), "params": ("params_redundant", "params_missing", "params_hallucinated",
                "params_redundant_missing", "params_hallucinated_redundant", "params_hallucinated_missing",
                "params_hallucinated_redundant_missing"), "content": ("content_filling",)}
SET_LABELS = {"toolworld_heldout": "ToolWorld held-out", "rotbench_clean": "RoTBench First_Turn clean",
              "rotbench_heavy": "RoTBench First_Turn heavy", "toolalpaca_real": "ToolAlpaca eval_real"}
STAGE_LABELS = {"convert": "convert GGUF → HF checkpoint", "zero_shot": "zero-shot, both styles (decode)",
                "sft_plain": "SFT plain + its evaluation", "sft_mae_pkt": "SFT MAE + PKT + its evaluation",
                "rl": "GRPO + its evaluation", "ppo": "PPO + its evaluation"}
RL_LABELS = {"rl": "GRPO", "ppo": "PPO"}


def load(out: Path) -> dict:
    results = {name: json.loads((out / f"{name}.json").read_text()) for name in STAGE_LABELS}
    results["run"] = json.loads((out / "run.json").read_text())
    results["items"] = json.loads((out / "eval_items.json").read_text())
    return results


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def _error_cells(m: dict) -> list[str]:
    return [_pct(sum(m.get(f"rate/{c}", 0.0) for c in cats)) for cats in ERROR_GROUPS.values()]


def zero_shot_table(r: dict) -> str:
    head = ["set", "prompt style", "TS", "PI", "CF", "reward", *(f"err: {g}" for g in ERROR_GROUPS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in SET_NAMES:
        for style in STYLES:
            m = r["zero_shot"][style][name]
            cells = [SET_LABELS[name], style, *(_pct(m[k]) for k in ("ts", "pi", "cf")), f"{m['reward']:+.2f}",
                     *_error_cells(m)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def models(r: dict) -> dict[str, dict]:
    """Row label → per-set metrics, for the prompt style the trained models use."""
    style = r["run"]["style"]
    start = r["run"]["rl_start"].replace("_", " + ").replace("mae + pkt", "MAE + PKT")
    return {f"zero-shot ({style})": r["zero_shot"][style], "SFT plain": r["sft_plain"]["eval"],
            "SFT MAE + PKT": r["sft_mae_pkt"]["eval"],
            **{f"SFT {start} + {label}": r[name]["eval"] for name, label in RL_LABELS.items()}}


def trained_table(r: dict) -> str:
    head = ["model", *(f"{SET_LABELS[n]}: TS / PI / CF" for n in SET_NAMES), "ToolWorld reward",
            *(f"ToolWorld err: {g}" for g in ERROR_GROUPS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, sets in models(r).items():
        cells = [label, *(" / ".join(_pct(sets[n][k]) for k in ("ts", "pi", "cf")) for n in SET_NAMES),
                 f"{sets['toolworld_heldout']['reward']:+.2f}", *_error_cells(sets["toolworld_heldout"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_lines(r: dict) -> list[str]:
    out = []
    for v in ("sft_plain", "sft_mae_pkt"):
        s = r[v]
        loss = s["train_loss"]
        first, last = sum(loss[:5]) / max(1, len(loss[:5])), sum(loss[-5:]) / max(1, len(loss[-5:]))
        out.append(f"* {v.replace('sft_', 'SFT ')}: {len(loss)} steps, {s['trained_tokens']:,} trained tokens "
                   f"({s['mae_blocked_calls']} erroneous calls masked by MAE); token CE (unweighted) {first:.3f} → "
                   f"{last:.3f} (mean of the first / last 5 steps); val loss {s['val_loss'][-1]:.3f}; "
                   f"{s['wall_s'] / 60:.1f} min training.")
    for name, label in RL_LABELS.items():
        g = r[name]
        out.append(f"* {label} from SFT {g['start']}: {len(g['reward'])} iterations; rollout reward per iteration "
                   f"{', '.join(f'{x:+.2f}' for x in g['reward'])}; format-error rate "
                   f"{', '.join(_pct(x) for x in g['format_error'])} %; {g['wall_s'] / 60:.1f} min training.")
    return out


def wall_table(r: dict) -> str:
    lines = ["| stage | wall (min) |", "|---|---|"]
    lines += [f"| {label} | {r[name]['stage_wall_s'] / 60:.1f} |" for name, label in STAGE_LABELS.items()]
    total = sum(r[name]["stage_wall_s"] for name in STAGE_LABELS)
    return "\n".join(lines + [f"| **total** | **{total / 60:.1f}** |"])


def bars(ax, xs: list[float], width: float, sets: dict, color: str, label: str) -> None:
    """TS bars with the CF bars (never higher: CF implies TS) drawn over them, hatched."""
    ax.bar(xs, [100 * sets[n]["ts"] for n in SET_NAMES], width, color=color, alpha=0.5, label=label)
    ax.bar(xs, [100 * sets[n]["cf"] for n in SET_NAMES], width, color=color, hatch="//", edgecolor="black")


SUPERSEDED = ("This page is the first, small real-model run (16 items a set, one seed). The study with error bars "
              "that supersedes it (issue #29) is [real_model.md](real_model.md).")


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ((a, b), (c, d)) = plt.subplots(2, 2, figsize=(14, 8.5))
    x = range(len(SET_NAMES))
    for j, style in enumerate(STYLES):
        bars(a, [(j - 0.5) * 0.4 + i for i in x], 0.4, r["zero_shot"][style], f"C{j}", style)
    ticks = [SET_LABELS[n].replace(" ", "\n", 1) for n in SET_NAMES]
    a.set_xticks(list(x), ticks, fontsize=8)
    a.set(ylabel="% of items", ylim=(0, 100), title="Zero-shot: TS (bar) and CF (hatched), paper prompt vs template")
    a.legend(fontsize=8)
    for v in ("sft_plain", "sft_mae_pkt"):
        b.plot(r[v]["train_loss"], label=v.replace("sft_", "SFT ").replace("mae_pkt", "MAE + PKT"))
    b.set(xlabel="optimizer step", ylabel="token CE (unweighted, train batch)", title="SFT loss, same data and steps")
    b.legend()
    rows = models(r)
    width = 0.8 / len(rows)
    for j, (label, sets) in enumerate(rows.items()):
        bars(c, [(j - (len(rows) - 1) / 2) * width + i for i in x], width, sets, f"C{j}", label)
    c.set_xticks(list(x), ticks, fontsize=8)
    c.set(ylabel="% of items", ylim=(0, 100), title="After each stage: TS (bar) and CF (hatched)")
    c.legend(fontsize=8)
    d2 = d.twinx()
    for j, (name, label) in enumerate(RL_LABELS.items()):
        g = r[name]
        d.plot(range(1, len(g["reward"]) + 1), g["reward"], marker="o", color=f"C{j}", label=f"{label} mean reward")
        d2.plot(range(1, len(g["format_error"]) + 1), [100 * v for v in g["format_error"]], marker="s",
                linestyle="--", color=f"C{j}", label=f"{label} format errors %")
    d.set(xlabel="RL iteration", ylabel="rollout mean reward", title="RL rollouts (sampled), equal budgets")
    d2.set(ylabel="format errors % (dashed)", ylim=(0, 100))
    d.legend(loc="upper left")
    d2.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, docs: Path, threads: int, quick: bool) -> str:
    r = load(out)
    docs.mkdir(parents=True, exist_ok=True)
    plot(r, docs / "real_model_first_run.png")
    scale = r["run"]["scale"]
    sizes = ", ".join(f"{SET_LABELS[n]} {len(ids)}" for n, ids in r["items"].items())
    md = "\n".join([
        "# SmolLM2-135M-Instruct on CPU" + (" (--quick smoke run: sizes too small to mean anything)" if quick else ""),
        "", SUPERSEDED,
        "", f"Reproduce: `OMP_NUM_THREADS={threads} python -m benchmarks.real_model{' --quick' if quick else ''}` "
        f"({threads} torch thread(s) on a shared 2-core machine). Settings: "
        + ", ".join(f"{k}={v}" for k, v in scale.items()) + ".", "",
        f"Evaluation items (a seeded sample of the items whose prompt fits {scale['max_prompt_tokens']} tokens in "
        f"both styles; ids in `eval_items.json` of the run directory): {sizes}. Greedy decoding, "
        f"{scale['max_new_tokens']} new tokens at most, scored by `taxonomy.classify` (lenient reading, "
        "docs/taxonomy.md), not RoTBench's own scorer. Rates in %; reward = mean IRM reward.", "",
        "## Zero-shot", "", zero_shot_table(r), "",
        f"## Trained (prompt style: {r['run']['style']})", "", trained_table(r), "",
        *training_lines(r), "", "## Wall time", "", wall_table(r), "", "![real model](real_model_first_run.png)", ""])
    (docs / "real_model_first_run.md").write_text(md)
    (docs / "real_model_first_run.json").write_text(json.dumps(r, indent=1))
    return md
