"""The night refreshes the planner's statistics of the tables it fills, though it does not own them.

The worker role is not the tables' owner, and PostgreSQL skips a non-owner's ANALYZE with a mere
WARNING: a fresh institution's first big day was then planned on statistics from when its tables were
small. Migration 008 gives the worker one owner-run function for the night's tables, and nothing else.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put

NORTH = get_institution("northfield")


def _estimated_rows(admin_conn, table: str) -> float:
    return admin_conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,)).fetchone()[0]


def _warnings(conn) -> list[str]:
    seen: list[str] = []
    conn.add_notice_handler(lambda notice: seen.append(f"{notice.severity}: {notice.message_primary}"))
    return seen


def test_a_big_load_refreshes_the_statistics_of_the_tables_it_filled(conn, admin_conn, s3, monkeypatch):
    monkeypatch.setattr(ingest, "ANALYSE_AFTER_ROWS", 1)  # a "big" load at test size
    monkeypatch.setattr(prepare, "ANALYSE_AFTER_ROWS", 1)
    rows = [row for n in range(40) for row in answers_for(f"s{n}", f"st{n}")]
    put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
    admin_conn.execute("ANALYZE answers, submissions, grades")  # statistics of the (empty) tables
    assert _estimated_rows(admin_conn, "answers") == 0
    warnings = _warnings(conn)

    ingest.ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, date.fromisoformat(DAY))
    graded = prepare.grade_by_rule(conn, NORTH, date.fromisoformat(DAY))

    assert warnings == [], "the worker's ANALYZE was skipped"
    assert _estimated_rows(admin_conn, "answers") == len(rows)
    assert _estimated_rows(admin_conn, "submissions") == 40
    assert graded and _estimated_rows(admin_conn, "grades") > 0


def test_the_worker_may_analyse_the_nights_tables_and_nothing_else(conn, embedded_stack):
    warnings = _warnings(conn)
    with conn.transaction():
        conn.execute("SELECT gradeflow_analyse('llm_requests')")
    assert warnings == []
    for table in ("institutions", "schema_migrations", "pg_class", "answers; DROP TABLE answers"):
        with pytest.raises(psycopg.errors.RaiseException, match="not a table the night may analyse"), \
                conn.transaction():
            conn.execute("SELECT gradeflow_analyse(%s)", (table,))
    # An institution's read-only role (its analysts) may not run it at all.
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        su.execute(f"SET ROLE {db.reader_role('northfield')}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            su.execute("SELECT gradeflow_analyse('answers')")


def _analyses(admin_conn, table: str) -> int:
    admin_conn.execute("SELECT pg_stat_clear_snapshot()")
    return admin_conn.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s",
                              (table,)).fetchone()[0]


def test_a_sweep_analyses_submissions_once_not_after_every_file(conn, admin_conn, s3, monkeypatch):
    """Each file's statements join only its own analysed temporary tables, so submissions (like answers) are
    analysed once, after the sweep: three big files, one ANALYZE (not one per file and one at the end)."""
    monkeypatch.setattr(ingest, "ANALYSE_AFTER_ROWS", 1)
    put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    for n in range(3):
        put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/submissions/{n}.csv",
            csv_bytes([row for s in range(10) for row in answers_for(f"s{n}-{s}", f"st{n}-{s}")]))
    before = {table: _analyses(admin_conn, table) for table in ("submissions", "answers")}

    report = ingest.ingest_institution(NORTH, conn, s3)

    assert report.files_loaded == 4 and report.rows_loaded == 120
    assert {table: _analyses(admin_conn, table) - before[table] for table in before} == {"submissions": 1,
                                                                                           "answers": 1}
    assert _estimated_rows(admin_conn, "submissions") == 30
