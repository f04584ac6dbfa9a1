"""The threshold table (gradeflow.release.calibration) against hand-computed values."""

from __future__ import annotations

import pytest

from gradeflow.release import calibration
from gradeflow.release.calibration import Pair

CONFIDENCES = [0.50, 0.60, 0.70, 0.80, 0.90, 0.92, 0.95, 0.97, 0.98, 0.99]
DIFFS = [2, 1, 0.5, 0, 0.75, 0, 0, 0, 0.5, 0]  # |model - human|; within 0.5 points: all but 0.50, 0.60, 0.90
PAIRS = [Pair(c, 3 - d, 3, 4) for c, d in zip(CONFIDENCES, DIFFS, strict=True)]


def _row(table, threshold):
    return next(r for r in table["rows"] if r["threshold"] == threshold)


def test_rows_match_hand_computed_shares_and_wilson_intervals():
    table = calibration.threshold_table(PAIRS, tolerance_points=0.5, target_accuracy=0.5,
                                        thresholds=[0.0, 0.75, 0.95])
    # Wilson by hand: centre (p + z²/2n)/(1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n), z = 1.959964
    # t = 0: 7 of 10 -> [0.3968, 0.8922]; t = 0.75: 6 of 7 -> [0.4869, 0.9743]; t = 0.95: 4 of 4 -> [0.5101, 1.0]
    assert [(r["threshold"], r["review_share"], r["released_pairs"], r["within"], r["accuracy"], r["ci_low"],
             r["ci_high"], r["meets"]) for r in table["rows"]] == [
        (0.0, 0.0, 10, 7, 0.7, 0.3968, 0.8922, False),
        (0.75, 0.3, 7, 6, 0.8571, 0.4869, 0.9743, False),
        (0.95, 0.6, 4, 4, 1.0, 0.5101, 1.0, True),
    ]
    assert table["recommended"] == {"threshold": 0.95, "review_share": 0.6, "accuracy": 1.0, "ci_low": 0.5101}


def test_the_smallest_review_share_whose_lower_bound_meets_the_target_is_recommended():
    table = calibration.threshold_table(PAIRS, 0.5, 0.45, thresholds=[0.0, 0.75, 0.95])
    assert [r["meets"] for r in table["rows"]] == [False, True, True]
    assert table["recommended"]["threshold"] == 0.75 and table["recommended"]["review_share"] == 0.3
    # the point estimate (0.857) is above a 0.8 target, but the lower bound is not: no recommendation
    assert calibration.threshold_table(PAIRS, 0.5, 0.8, thresholds=[0.75])["recommended"] is None


def test_tolerance_widens_what_counts_as_accurate():
    table = calibration.threshold_table(PAIRS, tolerance_points=1.0, target_accuracy=0.5, thresholds=[0.0])
    assert _row(table, 0.0)["within"] == 9  # 1 point off now counts; 2 points off does not
    assert calibration.threshold_table(PAIRS, 0.0, 0.5, thresholds=[0.0])["rows"][0]["within"] == 5


def test_review_share_comes_from_the_population_when_given():
    table = calibration.threshold_table(PAIRS, 0.5, 0.5, thresholds=[0.95],
                                        population=[(0.1, 1), (0.2, 1), (0.96, 2), (None, 1)])
    # below 0.95: 0.1, 0.2 and the work routed whatever the threshold (None) = 3 of 5
    assert _row(table, 0.95)["review_share"] == 0.6 and table["population"] == 5 and table["pairs"] == 10
    assert calibration.threshold_table(PAIRS, 0.5, 0.5, thresholds=[0.0],
                                       population=[(0.3, 4), (None, 1)])["rows"][0]["review_share"] == 0.2


def test_no_pairs_no_recommendation_and_a_clear_sentence():
    table = calibration.threshold_table([], 0.5, 0.95)
    assert table["recommended"] is None and all(r["ci_low"] is None for r in table["rows"])
    assert "No threshold is recommended" in calibration.render(table)
    assert table["rows"][0]["threshold"] == 0.0 and table["rows"][-1]["threshold"] == 0.99


def test_render_marks_the_recommended_and_the_current_threshold():
    text = calibration.render(calibration.threshold_table(PAIRS, 0.5, 0.45, thresholds=[0.0, 0.75, 0.95]),
                              current=0.95)
    assert "<- recommended" in text.splitlines()[3] and "(current)" in text.splitlines()[4]
    assert "Recommended min_confidence 0.75: 30.0% of answers to review" in text


@pytest.mark.parametrize("row", [{"confidence": None, "model_score": 1, "human_score": 1, "max_points": 2}, {}])
def test_rows_without_a_confidence_are_not_pairs(row):
    assert calibration.pairs_from_rows([row]) == []


def test_pairs_from_low_confidence_work_alone_never_vouch_for_the_confident_work():
    """Routed answers (all below the current threshold) are accurate here, but 90% of what threshold 0 would release
    lies in a band no human scored: not recommended (the demo's situation without audits)."""
    low = [Pair(0.6, 2, 2, 3)] * 30
    table = calibration.threshold_table(low, 0.5, 0.8, thresholds=[0.0, 0.75, 0.95],
                                        population=[(0.6, 10), (0.97, 90), (None, 1)])
    zero = _row(table, 0.0)
    assert (zero["ci_low"] > 0.8, zero["unmeasured_share"], zero["meets"]) == (True, 0.9, False)
    assert _row(table, 0.95)["released_pairs"] == 0 and table["recommended"] is None
    assert "confidence bands no human scored" in calibration.recommendation_text(table)
    # one audited pair in the confident band measures it: threshold 0 may be recommended again
    audited = calibration.threshold_table([*low, Pair(0.97, 2, 2, 3)], 0.5, 0.8, thresholds=[0.0, 0.75, 0.95],
                                          population=[(0.6, 10), (0.97, 90), (None, 1)])
    assert _row(audited, 0.0)["unmeasured_share"] == 0.0 and audited["recommended"]["threshold"] == 0.0
