"""Property-based test of the whole ingest on the embedded stack: generated exam definitions and
submission files (CSV, JSONL, Parquet; valid and broken) go through S3, the real ingest and Postgres.

Invariants: no exception escapes and no file fails; every input row is loaded (with exactly its
values), a duplicate, or a named reject, and the counts add up; every drop is archived exactly once.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings

from gradeflow.core.config import get_institution
from gradeflow.intake.ingest import ingest_institution
from tests.fuzz_files import Case, cases

from .helpers import DAY, keys, put

# generated timestamps span 2001-2098: the day-folder window (test_ingest_edges) is opened wide here
NORTH = replace(get_institution("northfield"), day_window_days=40_000)
PREFIX = f"incoming/northfield/{DAY}"


def _reset(conn, s3) -> None:
    """Empty what ingest writes (the `conn` fixture emptied every table once, before the first example).

    `conn` here is the owner's: the night's worker role may not delete from the append-only audit_log.
    """
    for table in ("answers", "submissions", "rejected_rows", "questions", "exams", "audit_log", "ingested_files"):
        conn.execute(f"DELETE FROM {table}")
    found = keys(s3, "")
    if found:
        s3.delete_objects(Bucket="gradeflow", Delete={"Objects": [{"Key": k} for k in found]})


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=cases())
def test_generated_files_through_the_real_ingest(conn, admin_conn, s3, case: Case):
    _reset(admin_conn, s3)
    put(s3, f"{PREFIX}/exams/{case.exam_name}", case.exam_bytes)
    put(s3, f"{PREFIX}/submissions/{case.sub_name}", case.sub_bytes)
    report = ingest_institution(NORTH, conn, s3)
    assert report.failed == []
    drops = 2
    if case.resend:
        put(s3, f"{PREFIX}/submissions/again-{case.sub_name}", case.sub_bytes)
        again = ingest_institution(NORTH, conn, s3)
        assert again.failed == [] and again.rows_loaded == 0 and again.rows_rejected == 0
        drops = 3
    _check_files(conn, s3, case, drops)
    _check_rows(conn, case)


def _check_files(conn, s3, case: Case, drops: int) -> None:
    """Every drop is recorded once, archived once, and its row counts add up."""
    assert keys(s3, "incoming/") == []
    files = conn.execute("SELECT file_name, kind, status, sha256, archived_key, rows_total, rows_loaded, "
                         "rows_duplicate, rows_rejected FROM ingested_files ORDER BY file_id").fetchall()
    assert len(files) == drops
    archived = keys(s3, "archive/")
    assert sorted(f[4] for f in files) == archived  # one archive object per drop, none missing or extra
    for name, kind, status, sha, archived_key, total, loaded, duplicate, rejected in files:
        assert archived_key.endswith(f"/{sha}/{name}")
        assert total == loaded + duplicate + rejected, name
        if kind == "exam":
            assert status == ("loaded" if case.exam_ok else "rejected")
    first = files[1]
    if case.file_reject:
        assert first[2] == "rejected"
        reason = conn.execute("SELECT reason FROM rejected_rows WHERE file_name = %s AND row_number IS NULL",
                              (case.sub_name,)).fetchone()[0]
        assert case.file_reject in reason
    else:
        assert first[5] == len(case.rows)
    if drops == 3:  # the re-send changes nothing and reports nothing again
        assert files[2][2] in ("duplicate", "rejected") and files[2][6] == files[2][8] == 0


def _check_rows(conn, case: Case) -> None:
    """Rows that must load are loaded with exactly their values; every other row is a named reject
    or a duplicate of an earlier row of the same file."""
    loaded = {r[0]: r[1:] for r in conn.execute(
        "SELECT a.source_row, a.submission_id, a.question_id, a.answer_text, s.student_id, s.submitted_at "
        "FROM answers a JOIN submissions s USING (institution_id, submission_id)")}
    rejected = {r[0]: r[1:] for r in conn.execute(
        "SELECT row_number, field, reason FROM rejected_rows WHERE file_name = %s AND row_number IS NOT NULL",
        (case.sub_name,))}
    file_rejected = case.file_reject is not None
    for row in case.rows:
        if file_rejected:
            assert row.number not in loaded and row.number not in rejected
        elif case.must_load(row):
            v = row.values
            assert loaded[row.number] == (v["submission_id"], v["question_id"], v["answer"], v["student_id"],
                                          row.stamp), row
        elif row.brk == "dup" and case.exam_ok:
            assert row.number not in loaded and row.number not in rejected
        else:
            field, reason = rejected[row.number]
            assert reason and field == case.expected_field(row), (row, field, reason)
    expected_loaded = 0 if file_rejected else sum(case.must_load(r) for r in case.rows)
    assert len(loaded) == expected_loaded
