"""Collect at scale (issue 18): a job's collect works on its own day's rows. Its statements once joined every
answer, current grade and open review the institution ever had, so collect slowed as the history grew."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, timedelta

import psycopg

from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.grading import night as grading
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put, run_night

NORTH = replace(get_institution("northfield"), retry_backoff_seconds=0.05)
D1 = date.fromisoformat(DAY)
D2 = D1 + timedelta(days=1)
# Every statement collect_job runs over the lifecycle tables (bulk_plans and the stage table's DDL aside).
COLLECT = ("grade/job_requests", "grade/record_ledger", "lifecycle/grade_lines", "lifecycle/requeue",
           "lifecycle/screen_candidates", "lifecycle/route_doubtful", "lifecycle/apply_model_grades",
           "lifecycle/to_review", "grade/record_collected")
DAY_TABLES = ("answers", "submissions", "grades", "review_queue", "llm_requests", "batch_lines")


def _load_day(conn, s3, day: date, prefix: str, submissions: int) -> None:
    """A day of `submissions` exams (each its own short answer), graded by rule and with its model work written."""
    rows = []
    for n in range(submissions):
        for row in answers_for(f"{prefix}{n}", f"st-{prefix}{n}", f"answer {prefix}{n}: the mitochondrion makes ATP",
                               minute=n % 60):
            rows.append(row | {"submitted_at": row["submitted_at"].replace(DAY, str(day))})
    put(s3, f"incoming/{NORTH.s3_prefix}/{day}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{NORTH.s3_prefix}/{day}/submissions/{prefix}.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, day)
    prepare.grade_by_rule(conn, NORTH, day)
    prepare.build_batches(Night(NORTH, day, conn, s3))


@contextmanager
def _explained(conn, names):
    """Record the `EXPLAIN (ANALYZE, FORMAT JSON)` plan of every statement of include/sql/<names> that `conn` runs.

    Observation only: each such statement is first run under EXPLAIN ANALYZE inside a savepoint that is rolled
    back (a transaction, outside one), then run as the code asked, so the code under test sees its own results."""
    texts = {db.sql(name): name for name in names}
    plans: dict[str, list[dict]] = {}
    base = conn.cursor_factory

    class Explaining(base):
        def execute(self, query, params=None, **kwargs):
            name = texts.get(query)
            if name is not None:
                idle = self.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                super().execute("BEGIN" if idle else "SAVEPOINT explain_statement")
                super().execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, params)
                row = self.fetchone()
                plans.setdefault(name, []).append((row["QUERY PLAN"] if isinstance(row, dict) else row[0])[0]["Plan"])
                super().execute("ROLLBACK" if idle else "ROLLBACK TO SAVEPOINT explain_statement")
            return super().execute(query, params, **kwargs)

    conn.cursor_factory = Explaining
    try:
        yield plans
    finally:
        conn.cursor_factory = base


def _scans(plan: dict) -> list[tuple[str, int]]:
    """(table, rows returned over all loops) of every plan node over a day-keyed table."""
    found = [(plan["Relation Name"], int(plan["Actual Rows"] * plan["Actual Loops"]))] \
        if plan.get("Relation Name") in DAY_TABLES else []
    return found + [scan for child in plan.get("Plans", []) for scan in _scans(child)]


def test_a_later_days_collect_reads_only_its_days_rows(conn, admin_conn, s3, emulator, openai_client):
    """Day 1 (12 exams) is graded by the model, with reviews (out-of-range scores, refusals, low confidence);
    then day 2's job (3 exams) is collected: every scan of its statements over answers, submissions, grades,
    reviews, requests and ledger lines returns at most day 2's rows of that table."""
    emulator.faults(refusal_every=2, out_of_range_every=3)
    _load_day(conn, s3, D1, "s", 12)
    run_night(conn, s3, openai_client, NORTH, D1)
    _load_day(conn, s3, D2, "t", 3)
    tonight = Night(NORTH, D2, conn, s3, openai_client)
    [job_id] = grading.submit_jobs(tonight)
    batch_id = grading.get_job(conn, NORTH, job_id)["provider_batch_id"]
    deadline = time.monotonic() + 30
    while tonight.provider.retrieve(batch_id).status not in grading.TERMINAL and time.monotonic() < deadline:
        time.sleep(0.05)
    # A reviewer graded one of day 2's answers before its model line came back: that grade stays the answer's.
    admin_conn.execute("INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, "
                       "grader) VALUES ('northfield', 't0', 'q4', %s, 1, 3, 'human')", (D2,))
    with _explained(conn, COLLECT) as plans:
        report = grading.collect_job(tonight, job_id)
    assert report.collected and report.lines_ok and report.lines_failed and report.answers_to_review
    assert {"lifecycle/screen_candidates", "lifecycle/route_doubtful", "lifecycle/apply_model_grades",
            "lifecycle/to_review"} <= set(plans)  # every statement over the lifecycle tables ran
    count = "SELECT count(*) FROM {} WHERE institution_id = 'northfield' AND exam_day = %s"
    per_day = {table: [admin_conn.execute(count.format(table), (d,)).fetchone()[0] for d in (D1, D2)]
               for table in DAY_TABLES}
    assert all(first > second > 0 for first, second in per_day.values() if first), per_day  # day 1 is the larger
    outcomes = admin_conn.execute(
        "SELECT a.submission_id, a.question_id, count(g.grade_id), count(v.review_id), min(g.grader) FROM answers a "
        "LEFT JOIN grades g USING (institution_id, submission_id, question_id) "
        "LEFT JOIN review_queue v ON v.institution_id = a.institution_id AND v.submission_id = a.submission_id "
        "AND v.question_id = a.question_id AND v.resolved_at IS NULL WHERE a.exam_day = %s AND (g.is_current "
        "OR g.grade_id IS NULL) GROUP BY 1, 2 ORDER BY 1, 2", (D2,)).fetchall()
    assert len(outcomes) == 12 and all(graded + reviewed == 1 for _, _, graded, reviewed, _ in outcomes), outcomes
    assert [o[4] for o in outcomes if o[:2] == ("t0", "q4")] == ["human"]
    over = [(name, table, rows) for name, statement_plans in sorted(plans.items()) for plan in statement_plans
            for table, rows in _scans(plan) if rows > per_day[table][1]]
    assert over == [], (over, per_day)
