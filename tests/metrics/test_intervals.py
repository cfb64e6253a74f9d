"""The bootstrap interval of a rate."""

from tl_lightning.metrics.intervals import bootstrap_interval


def test_bootstrap_interval_of_a_rate():
    assert bootstrap_interval([1.0] * 20) == (1.0, 1.0)  # no spread, no interval
    lo, hi = bootstrap_interval([1.0] * 30 + [0.0] * 70)
    # the normal approximation for p = 0.3, n = 100: 0.3 ± 1.96 × 0.0458 = 0.21 to 0.39
    assert 0.19 <= lo <= 0.23 and 0.37 <= hi <= 0.41
    wide = bootstrap_interval([1.0] * 3 + [0.0] * 7)
    assert wide[1] - wide[0] > hi - lo  # ten items: a wider interval
    assert bootstrap_interval([0.0, 1.0], seed=1) == bootstrap_interval([0.0, 1.0], seed=1)
