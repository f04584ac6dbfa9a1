"""A file's inserts run with ingest.INSERT_WORK_MEM: their statement-level reference checks read every inserted row
from a transition table, which PostgreSQL holds in work_mem and past it writes to a temporary file (read back by each
of the three checks of answers). The setting reaches the inserts: below the file's rows they spill, at the default
they do not (PostgreSQL's own count of temporary files of the database, pg_stat_database)."""

from __future__ import annotations

from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put

NORTH = get_institution("northfield")


def _drop(s3, name: str, first: int) -> None:
    rows = [row for n in range(first, first + 400) for row in answers_for(f"s{n}", f"st{n}", q4="ATP " * 40)]
    put(s3, f"incoming/northfield/{DAY}/submissions/{name}", csv_bytes(rows))  # 1,600 rows, ~0.3 MB of answers


def _temp_files(conn, admin_conn) -> int:
    """The database's temporary files so far, the ingest session's own counts included: a session hands its counts
    to the shared statistics when it goes idle, here forced at the commit."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    admin_conn.execute("SELECT pg_stat_clear_snapshot()")
    query = "SELECT temp_files FROM pg_stat_database WHERE datname = current_database()"
    return admin_conn.execute(query).fetchone()[0]


def test_the_inserts_hold_their_transition_tables_in_insert_work_mem(conn, admin_conn, s3, monkeypatch):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    _drop(s3, "a.csv", 1)
    monkeypatch.setattr(ingest, "INSERT_WORK_MEM", "64kB")  # less than the file's rows: the checks' rows spill
    before = _temp_files(conn, admin_conn)
    report = ingest.ingest_institution(NORTH, conn, s3)
    spilled = _temp_files(conn, admin_conn) - before
    assert report.rows_loaded == 1600 and spilled >= 1

    _drop(s3, "b.csv", 1000)
    monkeypatch.setattr(ingest, "INSERT_WORK_MEM", "8MB")
    before = _temp_files(conn, admin_conn)
    report = ingest.ingest_institution(NORTH, conn, s3)
    assert report.rows_loaded == 1600 and _temp_files(conn, admin_conn) == before
