"""Time loading + rendering every shared benchmark file, and print item/skip counts (docs/data.md numbers).

    python -m benchmarks.data_loading [--shared ../shared/data]
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


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    print(json.dumps(run(Path(ap.parse_args().shared)), indent=1))
