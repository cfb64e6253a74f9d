"""Should the reward validate arguments with `jsonschema` (issue #28)? Measured on the real benchmark gold calls.

    pip install jsonschema==4.26.0   # not a dependency of the project
    OMP_NUM_THREADS=1 python -m benchmarks.schema_validation

For every gold call of RoTBench (First_Turn clean/heavy, Third_Turn clean/heavy) and ToolAlpaca (eval_real,
eval_simulated), taken as a prediction: (1) how many fail `jsonschema` validation against their own tool's schema
(required keys, declared types, no undeclared keys: what the reward's H/M flags and a type check would read), by
the failing rule; (2) time per call of the reward's classification (`taxonomy.classify_call`, lenient) and of a
cached `jsonschema` validator's `iter_errors`, medians and ranges of 5 repeats, one thread.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from tl_lightning.data.loaders import load_source
from tl_lightning.rewards.taxonomy import GoldCall, classify_call

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = [("rotbench", "rotbench/Data/First_Turn/clean.json"), ("rotbench", "rotbench/Data/First_Turn/heavy.json"),
        ("rotbench", "rotbench/Data/Third_Turn/clean.json"), ("rotbench", "rotbench/Data/Third_Turn/heavy.json"),
        ("toolalpaca", "toolalpaca/data/eval_real.json"), ("toolalpaca", "toolalpaca/data/eval_simulated.json")]


def strict_schema(tool) -> dict:
    schema = dict(tool.to_openai()["parameters"])
    schema["properties"] = {k: ({} if v["type"] == "any" else {"type": v["type"]}) for k, v in
                            schema["properties"].items()}
    return {**schema, "additionalProperties": False}


def gold_calls():
    for fmt, rel in SETS:
        for conv in load_source(fmt, DATA / rel):
            tools = {t.name: t for t in conv.tools}
            for answer in conv.gold or ():
                for call in answer:
                    if call.name in tools:
                        yield rel, call, tools


def timed(fn, items, repeats: int = 5) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        out.append((time.perf_counter() - start) / len(items) * 1e6)
    return out


def main() -> None:
    try:
        import jsonschema
    except ImportError:
        sys.exit("jsonschema is not installed: pip install jsonschema==4.26.0")
    calls = list(gold_calls())
    validators = {}

    def validator(call, tools):
        key = id(tools[call.name])
        if key not in validators:
            validators[key] = jsonschema.Draft202012Validator(strict_schema(tools[call.name]))
        return validators[key]

    failing, rules = Counter(), Counter()
    for rel, call, tools in calls:
        errors = list(validator(call, tools).iter_errors(call.arguments))
        failing[rel] += bool(errors)
        rules.update({e.validator for e in errors})
    totals = Counter(rel for rel, _, _ in calls)
    print(f"{len(calls)} gold calls; failing jsonschema validation of their own tool's schema:")
    for rel in totals:
        print(f"  {rel}: {failing[rel]} of {totals[rel]} ({100 * failing[rel] / totals[rel]:.1f}%)")
    print(f"  by rule: {dict(rules)}")
    golds = [(call, GoldCall.from_call(call), tools) for _, call, tools in calls]
    ours = timed(lambda x: classify_call(x[0], x[1], x[2]), golds)
    theirs = timed(lambda x: list(validator(x[0], x[2]).iter_errors(x[0].arguments)), golds)
    for name, t in (("classify_call (today)", ours), ("jsonschema iter_errors (cached validator)", theirs)):
        print(f"  {name}: median {statistics.median(t):.1f} us/call (range {min(t):.1f}-{max(t):.1f})")


if __name__ == "__main__":
    main()
