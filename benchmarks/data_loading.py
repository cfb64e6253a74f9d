"""Time loading + rendering every shared benchmark file, and print item/skip counts (docs/data.md numbers).

    python -m benchmarks.data_loading [--shared ../shared/data] [--bfcl]

`--bfcl` also loads every BFCL category of the installed bfcl-eval package and scores each item's canonical gold,
rendered in our call format, as the prediction, in the category's default scoring mode and in the lenient mode.
"""

import argparse
import json
import time
from pathlib import Path

from tl_lightning.data.loaders import LoadReport, load_source
from tl_lightning.format.render import PaperFormat


def run(shared: Path) -> dict:
    jobs = [("rotbench", f) for f in sorted((shared / "rotbench/Data").glob("*/*.json"))]
    jobs += [("toolalpaca", shared / f"toolalpaca/data/{n}.json") for n in ("eval_real", "eval_simulated")]
    jobs += [("tooleyes", shared / f"tooleyes/Test_Data/scenario_data_{n}_processed.json") for n in ("zero", "five")]
    jobs += [("toolbench", shared / "toolbench/data_example/answer")]
    rows, fmt = [], PaperFormat()
    totals = {}
    for kind, path in jobs:
        report = LoadReport(kind, str(path.relative_to(shared)))
        t = time.perf_counter()
        convs = list(load_source(kind, path, report=report))
        t_load = time.perf_counter() - t
        chars = sum(len(fmt.render(c).text) for c in convs)
        t_all = time.perf_counter() - t
        totals[kind] = totals.get(kind, 0.0) + t_all
        rows.append({"file": report.path, "loaded": report.loaded, "skipped": dict(report.skipped),
                     "notes": dict(report.notes), "load_s": round(t_load, 3), "load_render_s": round(t_all, 3),
                     "rendered_chars": chars})
    return {"files": rows, "seconds_by_source": {k: round(v, 2) for k, v in totals.items()}}


def bfcl_gold_as_prediction() -> list[dict]:
    from tl_lightning.data.benchmark_datamodule import BenchmarkSource, scoring_mode
    from tl_lightning.data.loaders.bfcl import BFCL_CATEGORIES
    from tl_lightning.format.call_format import join_rendered, render_calls
    from tl_lightning.metrics.scoring import score_by_mode

    rows = []
    for category in BFCL_CATEGORIES:
        report = LoadReport("bfcl", category)
        convs = list(load_source("bfcl", category, report=report))
        mode = scoring_mode(BenchmarkSource(category, "bfcl", category))
        texts = [join_rendered(render_calls(c.gold[0])) if c.gold[0] else "I cannot help with that." for c in convs]
        scored = {m: [score_by_mode(t, c, m)[1].category for t, c in zip(texts, convs)] for m in (mode, "lenient")}
        rows.append({"category": category, "loaded": report.loaded, "skipped": dict(report.skipped), "mode": mode,
                     "gold_correct": {m: sum(x == "correct" for x in cats) for m, cats in scored.items()},
                     "gold_not_correct": [c.id for c, x in zip(convs, scored[mode]) if x != "correct"]})
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--bfcl", action="store_true", help="also BFCL (needs: pip install --no-deps -r "
                    "requirements-eval.txt)")
    args = ap.parse_args()
    out = run(Path(args.shared))
    if args.bfcl:
        out["bfcl"] = bfcl_gold_as_prediction()
    print(json.dumps(out, indent=1))
