"""The study's statistics, pure: per-item scores averaged over seeds, their bootstrap intervals, paired differences
against a baseline, and the learning-rate choice. Items are the resampled unit (seeds are averaged per item first),
so an interval says how much the result would move on other items of the same benchmark."""

from __future__ import annotations

from collections.abc import Sequence

from tl_lightning.metrics.intervals import bootstrap_interval

METRICS = ("ts", "pi", "cf")


def summary(items: Sequence[dict]) -> dict:
    """TS / PI / CF of one run's items, as means."""
    return {m: sum(r[m] for r in items) / max(1, len(items)) for m in METRICS}


def per_item_mean(runs: Sequence[Sequence[dict]], metric: str) -> list[float]:
    """Per item, the mean of `metric` over runs (seeds) of the same items in the same order."""
    _same_items(runs)
    return [sum(run[i][metric] for run in runs) / len(runs) for i in range(len(runs[0]))]


def _same_items(runs: Sequence[Sequence[dict]]) -> None:
    ids = [r["id"] for r in runs[0]]
    if any([r["id"] for r in run] != ids for run in runs[1:]):
        raise ValueError("runs were scored on different items")


def estimate(values: Sequence[float]) -> dict:
    """Mean and 95% bootstrap interval."""
    lo, hi = bootstrap_interval(list(values))
    return {"mean": sum(values) / len(values), "ci95": [lo, hi]}


def paired(baseline: Sequence[float], other: Sequence[float]) -> dict:
    """The mean per-item difference `other − baseline`, its interval, and whether the interval excludes zero."""
    diff = [b - a for a, b in zip(baseline, other, strict=True)]
    out = estimate(diff)
    return {**out, "separates": out["ci95"][0] > 0 or out["ci95"][1] < 0}


def category_share(runs: Sequence[Sequence[dict]], categories: set[str]) -> list[float]:
    """Per item, the share of runs (seeds) whose category for it is one of `categories`."""
    _same_items(runs)
    return [sum(run[i]["category"] in categories for run in runs) / len(runs) for i in range(len(runs[0]))]


def rate(runs: Sequence[Sequence[dict]], categories: set[str]) -> dict:
    """The share of items (averaged over runs) whose category is one of `categories`, with its interval."""
    return estimate(category_share(runs, categories))


def choose_lr(sweep: dict[float, dict]) -> float:
    """The learning rate with the best validation CF, then TS; a tie goes to the smaller rate."""
    return max(sorted(sweep), key=lambda lr: (sweep[lr]["cf"], sweep[lr]["ts"], -lr))
