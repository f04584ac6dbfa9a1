"""95% confidence intervals for the accuracy figures GradeFlow reports (audits, thresholds, agreement).

One place for the two intervals every report uses, both from SciPy rather than hand-written formulas:
`wilson` for a share (k of n within tolerance; binomtest's Wilson score interval, sensible at k = 0, k = n
and small n) and `bootstrap_mean` for a mean (the mean absolute error; percentile bootstrap with a fixed
seed so a report is reproducible). Both return None when there is nothing to estimate (n = 0) rather than
a made-up interval. May import: nothing of gradeflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261207


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The Wilson score interval for the share k/n, or None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"wilson: k must be within 0..n, got k={k}, n={n}")
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap_mean(values: Sequence[float], confidence: float = CONFIDENCE,
                   resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """A percentile-bootstrap interval for the mean of values, or None when there are none.

    A single value, or values all equal, give the degenerate interval (v, v): there is no spread to resample.
    The values are sorted first: the same values in another order (rows read unordered) give the same interval.
    """
    data = np.sort(np.asarray(list(values), dtype=float))
    if data.size == 0:
        return None
    if data.size == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    result = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples,
                             method="percentile", random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
