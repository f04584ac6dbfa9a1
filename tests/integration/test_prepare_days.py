"""Prepare reads the day it prepares, not the institution's history (issue 18, the prepare group): rule grading and
the model requests' groups check an answer's grade and review on the answer's own exam day (every writer of grades
and review_queue copies it from the answer), so their cost does not grow with every day graded before."""

from __future__ import annotations

from datetime import date

from gradeflow.core import db
from gradeflow.core.config import FREE_TEXT_TYPES, RULE_TYPES, get_institution
from gradeflow.grading import prepare
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put

NORTH = get_institution("northfield")
DAY1 = date.fromisoformat(DAY)
DAY2 = date.fromordinal(DAY1.toordinal() + 1)
CHECKED = {"grades", "review_queue"}


def _scans(plan: dict) -> list[tuple[str, int]]:
    """(table, rows returned over all loops) of every plan node over grades or review_queue (EXPLAIN ANALYZE)."""
    found = [(plan["Relation Name"], int(plan["Actual Rows"] * plan["Actual Loops"]))] \
        if plan.get("Relation Name") in CHECKED else []
    return found + [scan for child in plan.get("Plans", []) for scan in _scans(child)]


def _load(conn, s3, day: date, submissions: int, prefix: str) -> None:
    rows = [row | {"submitted_at": row["submitted_at"].replace(DAY, str(day))}
            for n in range(submissions) for row in answers_for(f"{prefix}{n}", f"{prefix}s{n}")]
    put(s3, f"incoming/northfield/{day}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{day}/submissions/{prefix}.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, day)


def _plan_scans(conn, name: str, params: dict) -> list[tuple[str, int]]:
    """The scans of a statement planned as at scale (hash joins over the day's rows: a merge join on these few rows
    would read the inner side twice and count its rows twice)."""
    with conn.transaction(force_rollback=True):
        db.execute(conn, "bulk_plans")
        conn.execute("SET LOCAL enable_mergejoin = off")
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + db.sql(name), db._check_params(conn, params)
                            ).fetchone()[0][0]["Plan"]
    return _scans(plan)


def test_rule_grading_and_request_groups_read_only_their_days_grades(conn, admin_conn, s3):
    """Day 1 (3 submissions) graded by rule and sent to review in part; day 2 (2 submissions): every scan of grades
    or review_queue in day 2's rule statement and request groups returns day 2's rows at most (they read every
    current grade and open review of the institution before)."""
    _load(conn, s3, DAY1, 3, "a")
    prepare.grade_by_rule(conn, NORTH, DAY1)
    admin_conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                 "SELECT a.institution_id, a.submission_id, a.question_id, a.exam_day, 'manual' FROM answers a "
                 "WHERE a.exam_day = %s AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = "
                 "a.institution_id AND g.submission_id = a.submission_id AND g.question_id = a.question_id)",
                 (DAY1,))
    history = dict(conn.execute("SELECT 'grades', count(*) FROM grades UNION ALL "
                                "SELECT 'review_queue', count(*) FROM review_queue").fetchall())
    assert history == {"grades": 9, "review_queue": 3}  # three rule questions, one free-text question each
    _load(conn, s3, DAY2, 2, "b")
    rule = {"inst": NORTH.id, "day": DAY2, "version": 1, "rule_types": sorted(RULE_TYPES),
            "free_text_types": sorted(FREE_TEXT_TYPES)}
    scans = _plan_scans(conn, "prepare/grade_by_rule", rule)
    assert scans and all(rows == 0 for _, rows in scans), scans  # day 2 has no grade or review yet
    assert prepare.grade_by_rule(conn, NORTH, DAY2) == 6
    groups = {"inst": NORTH.id, "days": [DAY2], "qtypes": sorted(FREE_TEXT_TYPES)}
    scans = _plan_scans(conn, "prepare/new_request_groups", groups)
    assert scans and all(rows <= {"grades": 6, "review_queue": 0}[table] for table, rows in scans), scans
    assert [g["answer_count"] for g in db.fetch_all(conn, "prepare/new_request_groups", groups)] == [2]  # one text
