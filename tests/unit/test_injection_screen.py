"""The prompt-injection screen (gradeflow.core.text.injection_signs): every attack of the suite is flagged, and
the sample day's ordinary answers are not (the false-flag rate is measured, and must stay at 0 here)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest

from devstack import sample_day
from gradeflow.core.text import injection_signs
from gradeflow.intake.contract import MAX_ANSWER_CHARS
from tests.attacks import ATTACKS


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_attack_of_the_suite_shows_a_sign(attack):
    assert injection_signs(attack), attack


def test_the_suite_has_thirty_distinct_attacks():
    assert len(set(ATTACKS)) == len(ATTACKS) >= 30


@pytest.mark.parametrize("answer", [
    "The mitochondrion produces ATP through cellular respiration.", "It gives energy to the cell (ATP).",
    "Photosynthesis uses light; the score of the reaction is high.", "I would ignore friction here.",
    "Full stop. Energy comes from respiration.", "The system is in equilibrium: no net force.",
    "-5 degrees is below freezing", "+3 charge on the ion", "", None, 42,
])
def test_ordinary_answers_show_no_sign(answer):
    assert injection_signs(answer) == []


def test_false_flags_on_the_sample_days_free_text_answers(tmp_path):
    """Every free-text answer of a generated sample day: how many the screen flags (0 today)."""
    manifest = sample_day.generate_day(tmp_path, ["northfield"], date(2026, 11, 23), submissions_per_exam=150)
    free_text = set()
    for path in (tmp_path / "incoming" / "northfield" / "2026-11-23" / "exams").glob("*.json"):
        exam = json.loads(path.read_text())
        free_text |= {(exam["exam_id"], q["question_id"]) for q in exam["questions"]
                      if q["type"] in ("short_answer", "essay")}
    answers = []
    for path in (tmp_path / "incoming" / "northfield" / "2026-11-23" / "submissions").glob("*.csv"):
        answers += [r["answer"] for r in csv.DictReader(io.StringIO(path.read_text(errors="replace")))
                    if (r.get("exam_id"), r.get("question_id")) in free_text
                    and len(r["answer"]) <= MAX_ANSWER_CHARS]  # longer ones are rejected rows, never graded
    assert manifest and len(answers) > 500
    flagged = [a[:80] for a in answers if injection_signs(a)]
    assert flagged == [], flagged[:10]  # 0 of the day's free-text answers (536 here)
