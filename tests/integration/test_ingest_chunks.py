"""Ingest in bounded chunks: rows are validated and staged a chunk at a time; nothing depends on where
the chunk boundaries fall (a submission split over two chunks, a clash with a row of an earlier
chunk, a bad row in the last chunk), and every reject is still named by file, row and field."""

from __future__ import annotations

import pytest

from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, keys, put

NORTH = get_institution("northfield")


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 3)
    monkeypatch.setattr(ingest, "ANALYSE_AFTER_ROWS", 5)  # the big-load path (ANALYZE) runs too


def _rejects(conn):
    return conn.execute("SELECT file_name, row_number, field, reason FROM rejected_rows "
                        "ORDER BY row_number").fetchall()


def test_a_chunk_boundary_inside_a_file_changes_nothing(conn, s3, small_chunks):
    # 4 rows per submission, chunks of 3: s1 rows 1-4 span chunks 1-2, s2 rows 5-8 span chunks 2-3.
    rows = answers_for("s1", "st1") + answers_for("s2", "st2") + answers_for("s3", "st3")
    clash = {**rows[1], "student_id": "someone-else"}  # row 13 (chunk 5): s1 was given to st1 in chunk 1
    second = {**rows[6], "answer": "true"}  # row 14: a different second answer to s2/q3 (chunk 3)
    rows += [clash, second, {**rows[0]}]  # row 15: s1/q1 again, same answer: a harmless duplicate
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/split.csv", csv_bytes(rows))

    report = ingest.ingest_institution(NORTH, conn, s3)

    assert (report.rows_loaded, report.rows_rejected, report.rows_duplicate) == (12, 2, 1)
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 3
    rejects = _rejects(conn)
    assert [(r[0], r[1], r[2]) for r in rejects] == [("split.csv", 13, "student_id"), ("split.csv", 14, "answer")]
    assert "belongs to student 'st1'" in rejects[0][3] and "(row 1)" in rejects[0][3]
    assert "loaded first (split.csv row 7)" in rejects[1][3]
    # Rows keep their place in the file: FIFO order follows the first row of each submission.
    assert conn.execute("SELECT min(source_row), max(source_row) FROM answers").fetchone() == (1, 12)


def test_a_reject_in_the_last_chunk_is_named(conn, s3, small_chunks):
    rows = answers_for("s1", "st1") + answers_for("s2", "st2")  # 8 rows: chunks of 3, 3 and 2
    rows[7]["submitted_at"] = "23/11/2026 10:00"  # row 8, the last row of the last chunk
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/late.csv", csv_bytes(rows))

    report = ingest.ingest_institution(NORTH, conn, s3)

    assert (report.rows_loaded, report.rows_rejected) == (7, 1)
    assert [(r[0], r[1], r[2]) for r in _rejects(conn)] == [("late.csv", 8, "submitted_at")]
    [report_key] = keys(s3, f"rejects/northfield/{DAY}/late.csv.")
    body = s3.get_object(Bucket="gradeflow", Key=report_key)["Body"].read().decode()
    assert "late.csv,8,submitted_at" in body

