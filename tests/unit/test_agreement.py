"""Agreement statistics against values computed by hand, and the review file's pure helpers."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pandas as pd
import pytest

from gradeflow.core.config import ConfigError, _parse_institution
from gradeflow.core.text import spreadsheet_safe
from gradeflow.intake import review_files
from gradeflow.intake.contract import FileRejected
from gradeflow.release import agreement
from gradeflow.review import packets as review

MODEL = np.array([0, 1, 2, 3])
HUMAN = np.array([0, 1, 3, 3])


def test_pearson_r_by_hand():
    # deviations (-1.5, -.5, .5, 1.5) and (-1.75, -.75, 1.25, 1.25): 5.5 / sqrt(5 * 6.75)
    assert agreement.pearson_r(MODEL, HUMAN) == pytest.approx(5.5 / math.sqrt(5 * 6.75))
    assert agreement.pearson_r(np.array([1, 1, 1]), np.array([0, 1, 2])) is None


def test_quadratic_weighted_kappa_by_hand():
    # Categories 0..3, weights (i-j)^2/9: observed disagreement 1/9 (one pair 2 vs 3); expected 48/36.
    assert agreement.quadratic_weighted_kappa(MODEL, HUMAN, 3) == pytest.approx(1 - (1 / 9) / (48 / 36))
    assert agreement.quadratic_weighted_kappa(MODEL, MODEL, 3) == pytest.approx(1.0)
    assert agreement.quadratic_weighted_kappa(np.array([2, 2]), np.array([2, 2]), 3) is None
    # Rounded half up: 1.5 -> 2 and 2.5 -> 3 agree with 2 and 3.
    assert agreement.quadratic_weighted_kappa(np.array([1.5, 2.5, 0]), np.array([2, 3, 0]), 3) == pytest.approx(1.0)


def test_figures_and_report_per_question():
    figures = agreement.figures(MODEL, HUMAN, 3)
    assert (figures["n"], figures["mae"], figures["changed_share"]) == (4, 0.25, 0.25)
    pairs = pd.DataFrame({"question_id": ["q1"] * 4 + ["q2"] * 2, "max_points": [3] * 4 + [6] * 2,
                          "model_score": [0, 1, 2, 3, 6, 0], "human_score": [0, 1, 3, 3, 6, 2],
                          "confidence": [0.99, 0.6, 0.75, 0.96, 0.97, 0.5]})
    found = agreement.report(pairs)
    assert [q["question_id"] for q in found["per_question"]] == ["q1", "q2"]
    assert found["per_question"][1]["mae"] == 1.0 and found["per_question"][1]["changed_share"] == 0.5
    # Overall MAE in points: |diffs| 0,0,1,0 and 0,2 -> 3/6; kappa on the largest max (6): q1's points doubled.
    assert found["overall"]["n"] == 6 and found["overall"]["mae"] == 0.5
    assert found["overall"]["qwk"] == pytest.approx(round(agreement.quadratic_weighted_kappa(
        np.array([0, 2, 4, 6, 6, 0]), np.array([0, 2, 6, 6, 6, 2]), 6), 4))
    bands = {b["band"]: b for b in agreement.by_confidence(pairs)}
    assert bands["[0.95, 1.00]"]["n"] == 3 and bands["[0.95, 1.00]"]["mae"] == 0.0
    assert bands["[0.70, 0.80)"]["n"] == 1 and bands["[0.70, 0.80)"]["changed_share"] == 1.0
    assert bands["[0.95, 1.00]"]["auto_released_share"] == 0.5
    assert agreement.report(pairs.iloc[0:0])["overall"]["n"] == 0


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_spreadsheet_safe_prefixes_formula_starts(value):
    assert spreadsheet_safe(value) == "'" + value
    assert spreadsheet_safe("plain text") == "plain text" and spreadsheet_safe(2.5) == 2.5


def test_packet_csv_never_starts_a_cell_with_a_formula():
    row = {c: "=cmd|' /C calc'!A0" for c in review.PACKET_COLUMNS}
    header, cells = list(csv.reader(io.StringIO(review.packet_csv([row]).decode("utf-8-sig"))))
    assert header[-4:] == ["score", "criteria", "reviewer", "comment"] and cells[-4:] == ["", "", "", ""]
    assert all(c == "'=cmd|' /C calc'!A0" for c in cells[:-4])


def test_review_file_parsing():
    data = "\ufeffReview_ID,Score,Reviewer,extra\nrv-1,2,ann,x\n\nrv-2,1\n".encode()
    rows = review_files.parse_review_file("r.csv", data)
    assert [(r.row, r.review_id, r.score, r.reviewer) for r in rows] == [(1, "rv-1", "2", "ann"),
                                                                         (3, "rv-2", "1", None)]
    rows = review_files.parse_review_file("r.jsonl", b'{"review_id": "rv-1", "score": 2, "reviewer": "ann"}\n\n')
    assert rows[0].score == 2
    for name, data, reason in [("r.csv", b"", "empty"), ("r.csv", b"review_id,score\n", "missing column"),
                               ("r.csv", b"\xff\xfe", "not UTF-8"), ("r.csv", b"review_id,score,reviewer\x00\n", "NUL"),
                               ("r.csv", b"review_id,score,reviewer,score\n", "named twice")]:
        with pytest.raises(FileRejected, match=reason):
            review_files.parse_review_file(name, data)


def test_check_row_reasons():
    items = {"rv-1": {"status": "open", "max_points": 3.0, "exam_day": "2026-11-23"},
             "rv-2": {"status": "closed", "max_points": 3.0, "exam_day": "2026-11-23"}}

    def reason(**kw):
        row = review_files.ReviewRow(1, kw.get("review_id", "rv-1"), kw.get("score", "1"), kw.get("reviewer", "ann"),
                               kw.get("comment"))
        good, bad = review_files._check_row("f.csv", row, items)
        return bad.reason if bad else good

    assert reason()["score"] == 1.0 and reason(score="2,5")["score"] == 2.5 and reason(score=3)["score"] == 3.0
    assert "closed" in reason(review_id="rv-2")
    assert "unknown" in reason(review_id="rv-9")
    for bad in ("inf", "nan", "", None, True, "1e999"):
        assert "finite" in reason(score=bad), bad
    assert "outside" in reason(score="3.01") and "outside" in reason(score=-0.5)
    assert "reviewer is missing" in reason(reviewer="  ")
    assert "NUL" in reason(reviewer="a\x00b") and "NUL" in reason(comment="x\ud800")
    assert "longer" in reason(comment="x" * 2001)


@pytest.mark.parametrize("value", [-0.1, 1.5, "high", True, float("nan")])
def test_min_confidence_must_be_between_0_and_1(value):
    with pytest.raises(ConfigError, match="min_confidence"):
        _parse_institution(0, {"id": "abc", "name": "A", "timezone": "UTC", "min_confidence": value})
    assert _parse_institution(0, {"id": "abc", "name": "A", "timezone": "UTC"}).min_confidence == 0.95
    assert _parse_institution(0, {"id": "abc", "name": "A", "timezone": "UTC", "min_confidence": 0}).min_confidence == 0
