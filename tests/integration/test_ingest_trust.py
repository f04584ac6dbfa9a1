"""Ingest trust (issue 5) on the real embedded Postgres and S3: re-sends, values Postgres cannot
store, broken exams, spreadsheet-safe reports, the audit log and bounded lock waits."""

from __future__ import annotations

import csv
import io
import json
import threading

import pytest

from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.intake import ingest
from gradeflow.intake.ingest import IngestBusy, ingest_institution

from .helpers import DAY, EXAM, answers_for, csv_bytes, exam_bytes, keys, put

NORTH = get_institution("northfield")
EXAM_KEY = f"incoming/northfield/{DAY}/exams/bio-101.json"


def _ingest(conn, s3):
    return ingest_institution(NORTH, conn, s3)


def _count(conn, table):
    return conn.execute(f"SELECT count(*) FROM {table} WHERE institution_id = 'northfield'").fetchone()[0]


def _exam(**question_changes) -> bytes:
    doc = json.loads(json.dumps(EXAM))
    for index, changes in question_changes.items():
        doc["questions"][int(index[1:])].update(changes)
    return json.dumps(doc).encode()


def test_a_file_resent_twice_before_its_exam_loads_when_the_exam_arrives(conn, s3):
    data = csv_bytes(answers_for("s1", "st1"))
    put(s3, f"incoming/northfield/{DAY}/submissions/early.csv", data)
    first = _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/early.csv", data)
    second = _ingest(conn, s3)
    put(s3, EXAM_KEY, exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/early.csv", data)
    third = _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/early.csv", data)
    fourth = _ingest(conn, s3)
    assert (first.rows_loaded, first.rows_rejected) == (0, 4)
    assert (second.rows_loaded, second.rows_rejected, second.rows_duplicate) == (0, 0, 4)  # never rejected twice
    assert (third.rows_loaded, third.files_duplicate) == (4, 0) and _count(conn, "answers") == 4
    assert (fourth.rows_loaded, fourth.files_duplicate, fourth.rows_duplicate) == (0, 1, 4)  # now settled
    assert _count(conn, "rejected_rows") == 4
    counts = conn.execute("SELECT status, rows_total, rows_loaded, rows_duplicate, rows_rejected, rows_waiting "
                          "FROM ingested_files WHERE kind = 'submissions' ORDER BY file_id").fetchall()
    assert counts == [("loaded", 4, 0, 0, 4, 4), ("duplicate", 4, 0, 4, 0, 4), ("loaded", 4, 4, 0, 0, 0),
                      ("duplicate", 4, 0, 4, 0, 0)]


def test_a_partly_loaded_file_resent_after_its_exam_loads_only_the_missing_rows(conn, s3):
    other = {**EXAM, "exam_id": "chem-1"}
    put(s3, EXAM_KEY, exam_bytes())
    rows = answers_for("s1", "st1") + [{**r, "exam_id": "chem-1"} for r in answers_for("s2", "st2")]
    put(s3, f"incoming/northfield/{DAY}/submissions/mixed.csv", csv_bytes(rows))
    first = _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/mixed.csv", csv_bytes(rows))
    second = _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/exams/chem-1.json", json.dumps(other).encode())
    put(s3, f"incoming/northfield/{DAY}/submissions/mixed.csv", csv_bytes(rows))
    third = _ingest(conn, s3)
    assert (first.rows_loaded, first.rows_rejected) == (4, 4)
    assert (second.rows_loaded, second.rows_rejected, second.rows_duplicate) == (0, 0, 8)
    assert (third.rows_loaded, third.rows_rejected, third.rows_duplicate) == (4, 0, 4)
    assert _count(conn, "answers") == 8 and _count(conn, "rejected_rows") == 4


def test_a_resend_with_nothing_new_to_wait_on_is_settled_without_reading_it(conn, s3, monkeypatch, caplog):
    """Issue 18: a re-sent file whose waiting rows still wait on the same definitions (its fingerprint,
    ingested_files.checked_with, equals the earlier drop's) is that drop's duplicate, rows_waiting carried over,
    neither staged nor checked ahead; once an exam arrives the fingerprint differs and the file is read again."""
    import logging

    caplog.set_level(logging.DEBUG, logger="gradeflow.intake.ingest")
    put(s3, EXAM_KEY, exam_bytes())
    rows = answers_for("s1", "st1") + [{**r, "exam_id": "chem-1"} for r in answers_for("s2", "st2")]
    put(s3, f"incoming/northfield/{DAY}/submissions/mixed.csv", csv_bytes(rows))
    first = _ingest(conn, s3)
    names, fetch_all, execute = [], db.fetch_all, db.execute
    monkeypatch.setattr(db, "fetch_all", lambda c, name, params=None: names.append(name) or fetch_all(c, name, params))
    monkeypatch.setattr(db, "execute", lambda c, name, params=None: names.append(name) or execute(c, name, params))
    put(s3, f"incoming/northfield/{DAY}/submissions/a-new.csv", csv_bytes(answers_for("s3", "st3")))
    put(s3, f"incoming/northfield/{DAY}/submissions/mixed.csv", csv_bytes(rows))  # read ahead after a-new.csv
    second = _ingest(conn, s3)
    assert names.count("ingest/create_stage") == 1  # a-new.csv's: mixed.csv is not staged
    assert any("mixed.csv ahead: settled by an earlier drop" in r.getMessage() for r in caplog.records)
    put(s3, f"incoming/northfield/{DAY}/exams/chem-1.json", json.dumps({**EXAM, "exam_id": "chem-1"}).encode())
    put(s3, f"incoming/northfield/{DAY}/submissions/mixed.csv", csv_bytes(rows))
    third = _ingest(conn, s3)
    assert names.count("ingest/create_stage") == 2  # the exam arrived: read again
    assert (first.rows_loaded, first.rows_rejected) == (4, 4)
    assert (second.rows_loaded, second.rows_rejected, second.rows_duplicate, second.files_duplicate) == (4, 0, 8, 1)
    assert (third.rows_loaded, third.rows_rejected, third.rows_duplicate) == (4, 0, 4)
    files = conn.execute("SELECT file_name, status, rows_total, rows_loaded, rows_duplicate, rows_waiting, "
                         "duplicate_of, checked_with IS NOT NULL FROM ingested_files WHERE kind = 'submissions' "
                         "ORDER BY file_id")
    first_id = conn.execute("SELECT min(file_id) FROM ingested_files WHERE file_name = 'mixed.csv'").fetchone()[0]
    assert files.fetchall() == [("mixed.csv", "loaded", 8, 4, 0, 4, None, True),
                                ("a-new.csv", "loaded", 4, 4, 0, 0, None, True),
                                ("mixed.csv", "duplicate", 8, 0, 8, 4, first_id, True),
                                ("mixed.csv", "loaded", 8, 4, 4, 0, None, True)]


def test_a_timestamp_postgres_cannot_store_is_a_row_reject_and_the_file_loads(conn, s3):
    put(s3, EXAM_KEY, exam_bytes())
    rows = answers_for("s1", "st1")
    rows[1]["submitted_at"] = f"{DAY}T10:00:00+18:00"
    rows[2]["submitted_at"] = "0001-01-01T00:00:00+14:00"
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    report = _ingest(conn, s3)
    assert report.failed == [] and (report.rows_loaded, report.rows_rejected) == (2, 2)
    assert keys(s3, "incoming/") == [] and len(keys(s3, f"rejects/northfield/{DAY}/a.csv.")) == 1
    rejects = conn.execute("SELECT row_number, field, reason FROM rejected_rows ORDER BY row_number").fetchall()
    assert [(r[0], r[1]) for r in rejects] == [(2, "submitted_at"), (3, "submitted_at")]
    assert "+18:00" in rejects[0][2] and "out of range" in rejects[1][2]


@pytest.mark.parametrize(("changes", "field"), [
    ({"q0": {"options": ["A", "B", "C\x00"]}}, "questions[0].options[2]"),
    ({"q0": {"prompt": "\ud800 bad"}}, "questions[0].prompt"),
    ({"q2": {"answer_key": float("nan")}}, "questions[2].answer_key"),
    ({"q0": {"max_points": float("nan")}}, "questions[0].max_points"),
    ({"q0": {"max_points": float("inf")}}, "questions[0].max_points"),
    ({"q2": {"tolerance": float("nan")}}, "questions[2].tolerance"),
])
def test_a_bad_exam_value_is_a_named_reject_of_the_file_and_its_answers_say_why(conn, s3, changes, field):
    put(s3, EXAM_KEY, _exam(**changes))
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")))
    report = _ingest(conn, s3)
    assert report.failed == [] and report.files_rejected == 1 and report.rows_rejected == 4
    assert _count(conn, "exams") == 0 and keys(s3, "incoming/") == []
    exam_fields = [r[0] for r in conn.execute("SELECT field FROM rejected_rows WHERE row_number IS NULL")]
    assert exam_fields == [field]
    reasons = {r[0] for r in conn.execute("SELECT reason FROM rejected_rows WHERE row_number IS NOT NULL")}
    assert len(reasons) == 1 and reasons.pop().startswith(
        f"exam 'bio-101' is not defined: its file bio-101.json was rejected: {field}: ")


def test_a_corrected_exam_file_then_loads_the_waiting_answers(conn, s3):
    answers = csv_bytes(answers_for("s1", "st1"))
    put(s3, EXAM_KEY, _exam(q0={"max_points": float("nan")}))
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", answers)
    _ingest(conn, s3)
    put(s3, EXAM_KEY, exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", answers)
    report = _ingest(conn, s3)
    assert report.rows_loaded == 4 and _count(conn, "answers") == 4


def test_an_exam_file_cannot_redefine_another_exam(conn, s3):
    put(s3, EXAM_KEY, exam_bytes())
    _ingest(conn, s3)
    hijack = {**EXAM, "title": "Chemistry", "questions": EXAM["questions"][:1]}
    put(s3, f"incoming/northfield/{DAY}/exams/chem.json", json.dumps(hijack).encode())
    report = _ingest(conn, s3)
    assert report.files_rejected == 1
    assert conn.execute("SELECT title FROM exams WHERE exam_id = 'bio-101'").fetchone()[0] == "Biology 101"
    assert _count(conn, "questions") == 4
    field, reason = conn.execute("SELECT field, reason FROM rejected_rows").fetchone()
    assert field == "exam_id" and "does not match the file name 'chem.json'" in reason


def test_rejects_report_neutralises_formulas_and_the_database_keeps_the_raw_value(conn, s3):
    put(s3, EXAM_KEY, exam_bytes())
    rows = answers_for("s1", "st1")
    rows[0]["question_id"] = '=HYPERLINK("http://evil.example","click")'
    rows[1]["question_id"] = "+1-2"
    rows[2]["question_id"] = "@SUM(A1)"
    rows[3]["submitted_at"] = "\t-3"
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    _ingest(conn, s3)
    [key] = keys(s3, "rejects/northfield/")
    body = s3.get_object(Bucket="gradeflow", Key=key)["Body"].read().decode()
    values = [line["value"] for line in csv.DictReader(io.StringIO(body))]
    assert values == ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'+1-2", "'@SUM(A1)", "'\t-3"]
    stored = [r[0] for r in conn.execute("SELECT value FROM rejected_rows ORDER BY row_number")]
    assert stored == ['=HYPERLINK("http://evil.example","click")', "+1-2", "@SUM(A1)", "\t-3"]


def test_every_ingest_decision_is_in_the_audit_log(conn, s3):
    put(s3, EXAM_KEY, exam_bytes())
    good = csv_bytes(answers_for("s1", "st1"))
    put(s3, f"incoming/northfield/{DAY}/submissions/good.csv", good)
    _ingest(conn, s3)
    rows = answers_for("s2", "st2")
    rows[0]["student_id"] = ""
    put(s3, f"incoming/northfield/{DAY}/submissions/partly.csv", csv_bytes(rows))
    put(s3, f"incoming/northfield/{DAY}/submissions/again.csv", good)
    put(s3, f"incoming/northfield/{DAY}/submissions/empty.csv", b"")
    _ingest(conn, s3)
    audit = {r[1]["file"]: (r[0], r[1]) for r in conn.execute(
        "SELECT action, details FROM audit_log WHERE actor = 'ingest' AND institution_id = 'northfield'")}
    assert {name: action for name, (action, _) in audit.items()} == {
        "bio-101.json": "file_loaded", "good.csv": "file_loaded", "partly.csv": "file_partly_loaded",
        "again.csv": "file_duplicate", "empty.csv": "file_rejected"}
    shas = {r[0]: r[1] for r in conn.execute("SELECT file_name, sha256 FROM ingested_files")}
    for name, (_, details) in audit.items():
        assert details["sha256"] == shas[name] and details["file_id"]
    assert {k: audit["partly.csv"][1][k] for k in ("rows_total", "rows_loaded", "rows_rejected")} == {
        "rows_total": 4, "rows_loaded": 3, "rows_rejected": 1}
    assert audit["again.csv"][1]["rows_duplicate"] == 4
    assert audit["empty.csv"][1]["reasons"] == ["the file is empty (0 bytes)"]
    assert audit["bio-101.json"][1]["note"] == "exam bio-101 defined"


def test_a_sweep_never_waits_silently_on_an_orphaned_ingest(conn, s3, monkeypatch):
    """As after a killed ingest: its backend still holds the institution's lock and an open transaction."""
    put(s3, EXAM_KEY, exam_bytes())
    orphan = db.connect(institution="northfield")
    try:
        orphan.execute("SELECT pg_advisory_lock(gradeflow_lock_key('ingest:northfield'))")
        orphan.execute("SET application_name = 'killed-ingest'")
        monkeypatch.setattr(ingest, "LOCK_WAIT_SECONDS", 0.5)
        with pytest.raises(IngestBusy) as raised:
            _ingest(conn, s3)
        pid = orphan.info.backend_pid
        assert f"backend pid {pid} (killed-ingest" in str(raised.value)
        assert "pg_terminate_backend" in str(raised.value)
        assert keys(s3, "incoming/") == [EXAM_KEY] and _count(conn, "ingested_files") == 0
    finally:
        orphan.close()
    report = _ingest(conn, s3)  # the orphan's connection is gone: its lock with it
    assert report.files_loaded == 1


def test_a_row_lock_held_elsewhere_fails_only_that_file_after_the_lock_timeout(conn, s3, monkeypatch):
    put(s3, EXAM_KEY, exam_bytes())
    _ingest(conn, s3)
    other = db.connect(institution="northfield")  # as the night: the worker role, bound
    try:
        other.autocommit = False
        other.execute("SELECT 1 FROM exams WHERE exam_id = 'bio-101' FOR NO KEY UPDATE")  # held, never committed
        monkeypatch.setattr(ingest, "FILE_LOCK_TIMEOUT", "300ms")
        changed = _exam(q3={"rubric": "A new rubric."})
        put(s3, EXAM_KEY, changed)
        put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")))
        done = threading.Event()
        result = {}

        def sweep():
            result["report"] = _ingest(db.connect(institution="northfield"), s3)
            done.set()

        threading.Thread(target=sweep, daemon=True).start()
        assert done.wait(30), "the sweep waited on a row lock instead of timing out"
    finally:
        other.close()
    report = result["report"]
    assert report.failed == [EXAM_KEY] and report.rows_loaded == 4  # the other file still loaded
