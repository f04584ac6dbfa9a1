"""The two intervals every accuracy figure carries, against values computed by hand."""

import math

import numpy as np
import pytest

from gradeflow.core.intervals import bootstrap_mean, wilson


def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (45, 50), (1, 3), (950, 1000)])
def test_wilson_equals_the_formula(k, n):
    low, high = wilson(k, n)
    expected = _wilson_by_hand(k, n)
    assert low == pytest.approx(expected[0], abs=1e-9)
    assert high == pytest.approx(expected[1], abs=1e-9)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_of_nothing_is_none_and_bad_counts_are_refused():
    assert wilson(0, 0) is None
    with pytest.raises(ValueError, match="k must be within"):
        wilson(5, 3)


def test_bootstrap_mean_brackets_the_mean_and_is_reproducible():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=200).astype(float)
    low, high = bootstrap_mean(values)
    assert low < values.mean() < high
    # the normal approximation's half-width is a good check of the percentile bootstrap at n = 200
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert high - low == pytest.approx(2 * half, rel=0.15)
    assert bootstrap_mean(values) == (low, high)


def test_bootstrap_mean_degenerate_cases():
    assert bootstrap_mean([]) is None
    assert bootstrap_mean([1.5]) == (1.5, 1.5)
    assert bootstrap_mean([0.0, 0.0, 0.0]) == (0.0, 0.0)


def test_bootstrap_mean_does_not_depend_on_the_order_of_the_values():
    # The audit's absolute errors come from SQL without an ORDER BY: the demo printed two intervals for one day.
    values = [abs(((i * 37) % 11) - 5) / 4 for i in range(49)]
    assert bootstrap_mean(values) == bootstrap_mean(list(reversed(values))) == bootstrap_mean(sorted(values))
