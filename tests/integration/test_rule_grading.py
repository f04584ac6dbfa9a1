"""Rule grading in the database: one statement grades a realistic day as tests/rules_reference.py would."""

from __future__ import annotations

from datetime import date

from devstack import sample_day
from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.intake.ingest import ingest_institution
from tests import rules_reference as rules

NORTH = get_institution("northfield")
DAY = date(2026, 11, 23)


def test_sql_rule_grading_matches_the_python_rules_on_a_sample_day(conn, s3, tmp_path):
    """Every objective answer of a sample day (multi-answer keys, tolerances, odd shapes) gets the score
    tests/rules_reference.py gives it; empty free-text answers get 0; a rerun grades nothing twice."""
    from psycopg.rows import dict_row

    sample_day.generate_day(tmp_path, ["northfield"], DAY, submissions_per_exam=40)
    sample_day.upload_day(tmp_path, s3, "gradeflow")
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, DAY)
    graded = prepare.grade_by_rule(conn, NORTH, DAY)
    rows = conn.cursor(row_factory=dict_row).execute(
        "SELECT a.answer_text, q.qtype, q.answer_key, q.tolerance, q.max_points, g.score, g.rationale"
        "  FROM answers a JOIN questions q USING (institution_id, exam_id, question_id)"
        "  LEFT JOIN grades g USING (institution_id, submission_id, question_id)"
        " WHERE a.institution_id = 'northfield'").fetchall()
    objective = [r for r in rows if r["qtype"] in ("multiple_choice", "true_false", "numeric")]
    empty = [r for r in rows if r["qtype"] in ("short_answer", "essay") and not r["answer_text"].strip()]
    assert graded == len(objective) + len(empty) > 0
    for r in objective:
        assert float(r["score"]) == rules.grade(r, r["answer_text"]), r
    assert {float(r["score"]) for r in objective} == {0.0} | {float(r["max_points"]) for r in objective}
    assert all(r["score"] == 0 and r["rationale"] == "no answer given" for r in empty)
    assert prepare.grade_by_rule(conn, NORTH, DAY) == 0
