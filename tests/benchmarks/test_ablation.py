"""The ablation's aggregation math and its held-out sets (the runs: `python -m benchmarks.ablation --quick`)."""

import json
import math

import pytest

from benchmarks.ablation.chain import Scale, heldout_prompts
from benchmarks.ablation.report import ERROR_GROUPS, VARIANTS, collect, error_rates, mean_std, tables
from tl_lightning.rewards.taxonomy import CATEGORIES


def test_mean_std_by_hand():
    m, s = mean_std([0.2, 0.4, 0.6])
    assert m == pytest.approx(0.4) and s == pytest.approx(0.2)  # sample std: sqrt(((-.2)^2 + 0 + .2^2) / 2)
    assert mean_std([0.5]) == (0.5, 0.0)


def test_error_groups_partition_the_error_categories():
    grouped = [c for cats in ERROR_GROUPS.values() for c in cats]
    assert sorted(grouped) == sorted(c for c in CATEGORIES if c != "correct")
    rates = {f"rate/{c}": 1 / len(CATEGORIES) for c in CATEGORIES}
    assert sum(error_rates(rates).values()) + rates["rate/correct"] == pytest.approx(1.0)


def test_every_irm_row_starts_from_an_sft_row():
    sft_rows = {v for v in VARIANTS.values() if v[1] == "sft"}
    assert all((sft, "sft") in sft_rows for sft, stage in VARIANTS.values() if stage == "ppo")
    assert len(VARIANTS) == 8


def test_heldout_levels_pair_the_same_items():
    scale = Scale(eval_conversations=6)
    clean, heavy = heldout_prompts(scale, "clean"), heldout_prompts(scale, "heavy")
    assert len(clean) == len(heavy) > 6
    assert [c.id for c in clean] == [h.id.replace("~heavy", "") for h in heavy]
    assert all(c.tools != h.tools for c, h in zip(clean, heavy))


def _result(cf: float) -> dict:
    metrics = {"ts": cf, "pi": cf, "cf": cf, "reward": 2 * cf - 1, **{f"rate/{c}": 0.0 for c in CATEGORIES}}
    metrics["rate/correct"], metrics["rate/format_error"] = cf, 1 - cf
    probe = {"pairs": 10, "mean_margin": 10 * cf, "error_preferred": 1 - cf}
    return {"train_s": 10.0, "eval": {"error_imitation": probe, **{lvl: metrics for lvl in ("clean", "slight", "medium",
                                                                                            "heavy", "union")}},
            "rollout_reward": [-1.0, -0.5, 0.0, 0.5]}


def test_collect_and_tables_from_result_files(tmp_path):
    for seed, cf in enumerate((0.2, 0.4)):
        for sft, stage in set(VARIANTS.values()):
            d = tmp_path / f"seed{seed}" / sft
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{stage}.json").write_text(json.dumps(_result(cf)))
    rows = collect(tmp_path)
    assert all(len(r) == 2 for r in rows.values())
    md = tables(rows)
    assert "| SFT | 30.0 ± 14.1 | 30.0 ± 14.1 | 30.0 ± 14.1 | -0.40 ± 0.28 | 70.0 ± 14.1 |" in md
    assert md.count("\n| MAE+PKT+IRM |") == 5  # one row in each of the five tables
    assert "| +MAE | 3.0 ± 1.4 | 70.0 ± 14.1 |" in md  # probe: margins 2 and 4 nats
    assert f"{math.fsum([-1.0, -0.5, 0.0]) / 3:.2f} ± 0.00" in md  # PPO reward, first three iterations
