"""The audit figures against hand-computed values (gradeflow.release.audit; intervals from gradeflow.core.intervals)."""

from __future__ import annotations

import math

import pytest

from gradeflow.core import intervals
from gradeflow.release import audit

Z = 1.959963984540054  # the 97.5% normal quantile


def _hand_wilson(k: int, n: int) -> tuple[float, float]:
    """The Wilson score interval written out (Wilson 1927), to check the figures' interval against."""
    p, z2 = k / n, Z * Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return centre - half, centre + half


# A small fixed data set: two questions, model and human scores by hand.
PAIRS = [
    {"exam_id": "bio", "question_id": "q4", "max_points": 3, "model_score": 3.0, "human_score": 3.0},   # 0
    {"exam_id": "bio", "question_id": "q4", "max_points": 3, "model_score": 2.5, "human_score": 2.0},   # 0.5 (edge)
    {"exam_id": "bio", "question_id": "q4", "max_points": 3, "model_score": 3.0, "human_score": 1.0},   # 2
    {"exam_id": "bio", "question_id": "q4", "max_points": 3, "model_score": 1.0, "human_score": 1.0},   # 0
    {"exam_id": "bio", "question_id": "q5", "max_points": 2, "model_score": 2.0, "human_score": 1.0},   # 1
    {"exam_id": "bio", "question_id": "q5", "max_points": 2, "model_score": 0.0, "human_score": 0.0},   # 0
]


def test_figures_equal_the_hand_computed_values():
    found = audit.report_from_pairs(PAIRS, tolerance=0.5)
    overall = found["overall"]
    # diffs 0, 0.5, 2, 0, 1, 0: within ±0.5 are 4 of 6 (0.5 itself counts); MAE = 3.5 / 6.
    assert overall["n"] == 6 and overall["within_tolerance"] == round(4 / 6, 4)
    assert overall["mae"] == round(3.5 / 6, 4)
    lo, hi = _hand_wilson(4, 6)
    assert overall["within_tolerance_ci95"] == pytest.approx([lo, hi], abs=1e-4)
    assert overall["mae_ci95"] == [round(x, 4) for x in intervals.bootstrap_mean([0, 0.5, 2, 0, 1, 0])]
    assert overall["mae_ci95"][0] <= overall["mae"] <= overall["mae_ci95"][1]
    q4, q5 = found["per_question"]
    assert (q4["question_id"], q4["n"], q4["within_tolerance"], q4["mae"]) == ("q4", 4, 0.75, 0.625)
    assert q4["within_tolerance_ci95"] == pytest.approx(list(_hand_wilson(3, 4)), abs=1e-4)
    assert (q5["question_id"], q5["n"], q5["within_tolerance"], q5["mae"], q5["max_points"]) == ("q5", 2, 0.5, 0.5, 2.0)
    assert q5["mae_ci95"] == [round(x, 4) for x in intervals.bootstrap_mean([1.0, 0.0])]


def test_a_tighter_tolerance_and_the_degenerate_cases():
    assert audit.report_from_pairs(PAIRS, tolerance=0.0)["overall"]["within_tolerance"] == 0.5  # 3 of 6 exact
    empty = audit.report_from_pairs([], tolerance=0.5)
    assert empty == {"overall": {"n": 0, "within_tolerance": None, "within_tolerance_ci95": None, "mae": None,
                                 "mae_ci95": None}, "per_question": []}
    one = audit.figures([2.0], [2.0], 0.5)
    assert (one["within_tolerance"], one["mae"], one["mae_ci95"]) == (1.0, 0.0, [0.0, 0.0])
    assert one["within_tolerance_ci95"] == pytest.approx(list(_hand_wilson(1, 1)), abs=1e-4)


def test_describe_names_both_populations():
    found = {"tolerance_points": 0.5, "unreviewed_model": audit.report_from_pairs(PAIRS, 0.5),
             "routed": audit.report_from_pairs([], 0.5)}
    line = audit.describe(found)
    assert "audits): n=6, within ±0.5 pt 66.7%" in line and "routed to review: n=0" in line
