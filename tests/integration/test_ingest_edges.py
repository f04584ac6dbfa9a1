"""Issue 17, ingest: day folders checked against the answers' timestamps (in the institution's zone)."""

from __future__ import annotations

from dataclasses import replace

from gradeflow.core.config import get_institution
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, keys, put

NORTH = get_institution("northfield")  # America/New_York


def _rejects(conn):
    return conn.execute("SELECT file_name, row_number, field, reason FROM rejected_rows ORDER BY row_number").fetchall()


def test_answers_far_from_their_day_folder_are_named_rejects(conn, s3):
    put(s3, "incoming/northfield/2099-12-31/exams/bio-101.json", exam_bytes())
    rows = answers_for("s1", "st1")  # submitted on DAY (2026-11-23), filed under 2099-12-31
    put(s3, "incoming/northfield/2099-12-31/submissions/far.csv", csv_bytes(rows))
    report = ingest_institution(NORTH, conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (0, 4)
    rejects = _rejects(conn)
    assert {r[2] for r in rejects} == {"submitted_at"}
    assert all("2099-12-31" in r[3] and "2026-11-23" in r[3] and "2 day" in r[3] for r in rejects), rejects


def test_answers_within_the_window_in_the_institutions_zone_load(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    rows = answers_for("s1", "st1")
    rows[0]["submitted_at"] = "2026-11-26T03:00:00+00:00"  # 2026-11-25 22:00 in New York: 2 days after, loads
    rows[1]["submitted_at"] = "2026-11-26T06:00:00+00:00"  # 2026-11-26 01:00 in New York: 3 days after
    put(s3, f"incoming/northfield/{DAY}/submissions/edge.csv", csv_bytes(rows))
    report = ingest_institution(NORTH, conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (3, 1)
    [reject] = _rejects(conn)
    assert reject[1] == 2 and reject[2] == "submitted_at" and "2026-11-26" in reject[3]


def test_the_window_is_configurable(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    rows = answers_for("s1", "st1")
    rows[0]["submitted_at"] = "2026-12-20T10:00:00-05:00"
    put(s3, f"incoming/northfield/{DAY}/submissions/late.csv", csv_bytes(rows))
    report = ingest_institution(replace(NORTH, day_window_days=30), conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (4, 0)


def test_an_exam_file_dropped_in_submissions_with_known_bytes_is_rejected_not_a_duplicate(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    ingest_institution(NORTH, conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/bio-101.json", exam_bytes())
    report = ingest_institution(NORTH, conn, s3)
    assert (report.files_rejected, report.files_duplicate) == (1, 0)
    [(reason,)] = conn.execute("SELECT reason FROM rejected_rows WHERE file_name = 'bio-101.json'").fetchall()
    assert "not a recognised path" in reason and "submissions/<name>.csv" in reason


def test_a_submissions_file_over_the_size_limit_is_a_named_reject_with_its_size(conn, s3):
    import hashlib

    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    data = csv_bytes([row for i in range(20) for row in answers_for(f"s{i}", f"st{i}")])
    put(s3, f"incoming/northfield/{DAY}/submissions/big.csv", data)
    small = replace(NORTH, max_submission_bytes=1_000)  # the institution's limit, made small
    report = ingest_institution(small, conn, s3)
    assert report.files_rejected == 1 and report.rows_loaded == 0 and report.failed == []
    [(reason,)] = conn.execute("SELECT reason FROM rejected_rows WHERE file_name = 'big.csv'").fetchall()
    assert f"{len(data):,} bytes" in reason and "1,000 bytes" in reason and "max_submission_bytes" in reason
    assert "split it" in reason
    [(status, sha, archived)] = conn.execute(
        "SELECT status, sha256, archived_key FROM ingested_files WHERE file_name = 'big.csv'").fetchall()
    assert status == "rejected" and sha == hashlib.sha256(data).hexdigest()
    # moved out of incoming/ like any rejected file: the next sweep does not meet it again
    assert keys(s3, f"incoming/northfield/{DAY}/submissions/") == [] and archived in keys(s3, "archive/")
    again = ingest_institution(small, conn, s3)
    assert (again.files_seen, again.failed) == (0, [])


def test_the_default_size_limit_loads_the_same_file(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    data = csv_bytes([row for i in range(20) for row in answers_for(f"s{i}", f"st{i}")])
    put(s3, f"incoming/northfield/{DAY}/submissions/big.csv", data)
    assert NORTH.max_submission_bytes == 1024 ** 3
    report = ingest_institution(NORTH, conn, s3)
    assert (report.files_rejected, report.rows_loaded) == (0, 80)
