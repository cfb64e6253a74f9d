"""Evaluation outputs: summary JSON, a markdown report (per benchmark, RoTBench noise levels side by side, error
categories) and a PNG bar chart of error-category rates."""

from __future__ import annotations

import json
from pathlib import Path

from tl_lightning.metrics.tool_call import SCALARS, VALIDITY
from tl_lightning.rewards.taxonomy import CATEGORIES

NOISE = ("clean", "slight", "medium", "heavy", "union")
SCORING_NOTE = ("Scoring: *official* reproduces the benchmark's own scorer item by item (RoTBench `evaluate.py`, "
                "BFCL `ast_checker`); *lenient* is ours (docs/taxonomy.md). Exact match and arg F1 are ours.")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown(summary: dict[str, dict]) -> str:
    scored = {g: m for g, m in summary.items() if "ts" in m}
    lines = ["# Evaluation", "", SCORING_NOTE, "", "| benchmark | scoring | n | TS | PI | CF | exact match | arg F1 |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {g} | {m.get('scoring', 'lenient')} | {m['n']} | " + " | ".join(_pct(m[k]) for k in SCALARS) + " |"
              for g, m in scored.items()]
    rot = {g: m for g, m in scored.items() if g.startswith("rotbench/")}
    if rot:
        modes = ", ".join(sorted({m.get("scoring", "lenient") for m in rot.values()}))
        lines += ["", f"## Robustness: RoTBench noise levels (TS / PI / CF, %; scoring: {modes})", "",
                  "| turn | " + " | ".join(NOISE) + " |", "|---|" + "---:|" * len(NOISE)]
        for turn in sorted({g.split("/")[1] for g in rot if g.count("/") >= 2}):
            cells = []
            for level in NOISE:
                m = rot.get(f"rotbench/{turn}/{level}")
                cells.append(" / ".join(_pct(m[k]) for k in ("ts", "pi", "cf")) if m else "—")
            lines.append(f"| {turn} | " + " | ".join(cells) + " |")
    if scored:
        used = [c for c in CATEGORIES if any(m.get(f"rate/{c}", 0) > 0 for m in scored.values())]
        lines += ["", "## Error categories (% of items)", "", "| benchmark | " + " | ".join(used) + " |",
                  "|---|" + "---:|" * len(used)]
        lines += [f"| {g} | " + " | ".join(_pct(m[f"rate/{c}"]) for c in used) + " |" for g, m in scored.items()]
    valid = {g: m for g, m in summary.items() if "format_valid" in m}
    if valid:
        lines += ["", "## Offline validity (ours; items without gold, e.g. ToolEyes; not the paper's DE/CE/VA)", "",
                  "| benchmark | n | format valid | tool valid | params valid |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {g} | {m['n']} | " + " | ".join(_pct(m[k]) for k in VALIDITY) + " |" for g, m in valid.items()]
    return "\n".join(lines) + "\n"


def plot_error_categories(summary: dict[str, dict], path: Path) -> Path | None:
    scored = {g: m for g, m in summary.items() if "ts" in m}
    if not scored:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = [c for c in CATEGORIES if any(m.get(f"rate/{c}", 0) > 0 for m in scored.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(used) + 2), 0.45 * len(scored) * len(used) / 3 + 3))
    height = 0.8 / max(1, len(scored))
    for i, (g, m) in enumerate(scored.items()):
        ax.barh([j + i * height for j in range(len(used))], [100 * m[f"rate/{c}"] for c in used], height=height,
                label=g)
    ax.set_yticks([j + 0.4 - height / 2 for j in range(len(used))], used)
    ax.invert_yaxis()
    ax.set_xlabel("% of items")
    ax.set_title("Tool-call categories by benchmark")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(summary: dict[str, dict], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "summary.json", "markdown": out_dir / "summary.md"}
    paths["json"].write_text(json.dumps(summary, indent=2))
    paths["markdown"].write_text(markdown(summary))
    png = plot_error_categories(summary, out_dir / "error_categories.png")
    if png:
        paths["plot"] = png
    return paths
