"""Ingest against the real embedded Postgres and S3: good, bad, duplicate and broken files."""

from __future__ import annotations

import csv
import io

from gradeflow.core.config import get_institution
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, keys, put

NORTH = get_institution("northfield")
LAKE = get_institution("lakeshore")


def _ingest(conn, s3, inst=NORTH):
    return ingest_institution(inst, conn, s3)


def _count(conn, table, inst="northfield"):
    return conn.execute(f"SELECT count(*) FROM {table} WHERE institution_id = %s", (inst,)).fetchone()[0]


def test_good_and_bad_rows_are_split_and_reported(conn, s3):
    rows = answers_for("s1", "st1") + answers_for("s2", "st2")
    rows[5]["student_id"] = ""  # s2/q2: missing student
    rows.append({**rows[0], "submission_id": "s3", "question_id": "q9"})  # unknown question
    rows.append({**rows[0], "submission_id": "s4", "submitted_at": "23/11/2026 10:00"})  # bad timestamp
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/morning.csv", csv_bytes(rows))

    report = _ingest(conn, s3)

    assert (report.files_loaded, report.rows_loaded, report.rows_rejected) == (2, 7, 3)
    assert _count(conn, "answers") == 7 and _count(conn, "submissions") == 2
    rejects = conn.execute(
        "SELECT file_name, row_number, field, reason FROM rejected_rows ORDER BY row_number").fetchall()
    assert [(r[0], r[1], r[2]) for r in rejects] == [
        ("morning.csv", 6, "student_id"), ("morning.csv", 9, "question_id"), ("morning.csv", 10, "submitted_at")]
    assert all(r[3] for r in rejects)
    [report_key] = keys(s3, f"rejects/northfield/{DAY}/morning.csv.")
    body = s3.get_object(Bucket="gradeflow", Key=report_key)["Body"].read().decode()
    lines = list(csv.DictReader(io.StringIO(body)))
    assert [(x["file"], x["row"], x["field"]) for x in lines] == [(r[0], str(r[1]), r[2]) for r in rejects]
    assert keys(s3, "incoming/") == []
    archived = keys(s3, "archive/northfield/")
    assert len(archived) == 2 and archived[1].endswith("/morning.csv") or archived[0].endswith("/morning.csv")


def test_file_dropped_twice_is_loaded_once(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    data = csv_bytes(answers_for("s1", "st1"))
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", data)
    first = _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/a-resend.csv", data)
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    second = _ingest(conn, s3)
    assert first.rows_loaded == 4 and second.files_duplicate == 2 and second.rows_loaded == 0
    assert _count(conn, "answers") == 4
    statuses = conn.execute("SELECT file_name, status FROM ingested_files ORDER BY file_id").fetchall()
    assert statuses[-2:] == [("bio-101.json", "duplicate"), ("a-resend.csv", "duplicate")] or \
        sorted(statuses[-2:]) == [("a-resend.csv", "duplicate"), ("bio-101.json", "duplicate")]
    assert keys(s3, "incoming/") == []


def test_rows_already_loaded_in_another_file_are_counted_not_reloaded(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")))
    _ingest(conn, s3)
    clash = answers_for("s1", "someone-else")[:1] + answers_for("s1", "st1")[:2] + answers_for("s2", "st2")
    put(s3, f"incoming/northfield/{DAY}/submissions/b.csv", csv_bytes(clash))
    report = _ingest(conn, s3)
    assert (report.rows_loaded, report.rows_duplicate, report.rows_rejected) == (4, 2, 1)
    reject = conn.execute("SELECT row_number, field, reason FROM rejected_rows").fetchone()
    assert reject[0] == 1 and reject[1] == "student_id" and "already loaded" in reject[2]


def test_broken_file_does_not_stop_the_others(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/broken.parquet", b"PAR1 this is not parquet")
    put(s3, f"incoming/northfield/{DAY}/submissions/notes.txt", b"hello")
    put(s3, f"incoming/northfield/{DAY}/submissions/good.jsonl",
        b"\n".join(__import__("json").dumps(r).encode() for r in answers_for("s1", "st1")))
    report = _ingest(conn, s3)
    assert report.files_rejected == 2 and report.rows_loaded == 4 and report.failed == []
    reasons = dict(conn.execute("SELECT file_name, reason FROM rejected_rows WHERE row_number IS NULL").fetchall())
    assert "Parquet" in reasons["broken.parquet"] and "not a recognised path" in reasons["notes.txt"]


def test_bad_exam_definition_rejects_its_answers_with_a_reason(conn, s3):
    bad = __import__("json").loads(exam_bytes())
    bad["questions"][3].pop("rubric")
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", __import__("json").dumps(bad).encode())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")))
    report = _ingest(conn, s3)
    # The exam's problem rejects its file (counted in files_rejected), its answers are 4 row rejects.
    assert report.rows_loaded == 0 and report.rows_rejected == 4 and report.files_rejected == 1
    fields = {r[0] for r in conn.execute("SELECT field FROM rejected_rows")}
    assert fields == {"questions[3].rubric", "exam_id"}
    reasons = {r[0] for r in conn.execute("SELECT reason FROM rejected_rows WHERE row_number IS NOT NULL")}
    assert reasons == {"exam 'bio-101' is not defined: its file bio-101.json was rejected: "
                       "questions[3].rubric: required"}


def test_crash_between_commit_and_archive_loses_nothing_and_loads_nothing_twice(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    data = csv_bytes(answers_for("s1", "st1"))
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", data)
    _ingest(conn, s3)
    # As if the worker died after the commit and before the archive: the file is back, archive unrecorded.
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", data)
    conn.execute("UPDATE ingested_files SET archived_key = NULL WHERE file_name = 'a.csv'")
    conn.commit()
    report = _ingest(conn, s3)
    assert report.rows_loaded == 0 and report.files_duplicate == 0 and _count(conn, "answers") == 4
    assert _count(conn, "ingested_files") == 2 and keys(s3, "incoming/") == []


def test_isolation_one_institution_never_reads_another_prefix(conn, s3, tenant_conn, admin_conn):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")))
    put(s3, f"incoming/lakeshore/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")))
    _ingest(conn, s3)
    lake = _ingest(tenant_conn("lakeshore"), s3, LAKE)
    assert _count(admin_conn, "answers", "lakeshore") == 0 and lake.rows_rejected == 4  # bio-101 is northfield's
    assert _count(admin_conn, "answers", "northfield") == 4
    assert all(k.startswith("archive/lakeshore/") or k.startswith("archive/northfield/") for k in keys(s3, "archive/"))
    assert len(keys(s3, "rejects/lakeshore/")) == 1 and keys(s3, "rejects/northfield/") == []


def test_a_file_refused_for_its_missing_exam_loads_when_sent_again_after_the_exam(conn, s3):
    data = csv_bytes(answers_for("s1", "st1"))
    put(s3, f"incoming/northfield/{DAY}/submissions/early.csv", data)
    first = _ingest(conn, s3)
    assert first.rows_rejected == 4 and first.rows_loaded == 0
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/early.csv", data)
    second = _ingest(conn, s3)
    assert second.rows_loaded == 4 and second.files_duplicate == 0 and _count(conn, "answers") == 4
    assert len(keys(s3, f"rejects/northfield/{DAY}/")) == 1  # the first drop's report stays


def test_a_different_second_answer_is_rejected_with_the_one_that_stands(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    rows = answers_for("s1", "st1") + [{**answers_for("s1", "st1")[0], "answer": "C"}]
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    report = _ingest(conn, s3)
    later = [{**answers_for("s1", "st1")[0], "answer": "A"}, answers_for("s1", "st1")[1]]
    put(s3, f"incoming/northfield/{DAY}/submissions/b.csv", csv_bytes(later))
    second = _ingest(conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (4, 1)
    assert (second.rows_loaded, second.rows_duplicate, second.rows_rejected) == (0, 1, 1)
    reasons = [r[0] for r in conn.execute("SELECT reason FROM rejected_rows ORDER BY reject_id")]
    assert "a.csv row 1" in reasons[0] and "a.csv row 1" in reasons[1]
    assert conn.execute("SELECT answer_text FROM answers WHERE question_id = 'q1'").fetchone()[0] == "B"


def test_same_name_twice_keeps_both_reject_reports(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    bad = answers_for("s1", "")
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(bad[:2]))
    _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(bad[2:]))
    _ingest(conn, s3)
    assert len(keys(s3, f"rejects/northfield/{DAY}/a.csv.")) == 2


def test_resent_file_with_bad_rows_reports_each_reject_once(conn, s3):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    rows = answers_for("s1", "st1")
    rows[1] = {**rows[1], "question_id": "q9"}
    rows[2] = {**rows[2], "submitted_at": "soon"}
    data = csv_bytes(rows)
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", data)
    first = _ingest(conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/a.resend.csv", data)
    second = _ingest(conn, s3)
    assert (first.rows_loaded, first.rows_rejected) == (2, 2)
    assert (second.rows_loaded, second.rows_rejected, second.rows_duplicate) == (0, 0, 4)  # reported before
    assert _count(conn, "rejected_rows") == 2 and _count(conn, "answers") == 2


def test_the_same_answer_again_loads_once_from_its_first_row_and_counts_as_duplicate(conn, s3):
    """Twins (the same answer to the same question of a submission, again) are dropped from the stage with the
    clashes: the first row loads, the others are duplicates, also next to a clash and beside an earlier load."""
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    first = answers_for("s1", "st1")
    rows = first + [first[0], first[0], {**first[1], "answer": "true"}, first[1]]  # rows 5-6 twins, 7 clash, 8 twin
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    report = _ingest(conn, s3)
    assert (report.rows_loaded, report.rows_duplicate, report.rows_rejected) == (4, 3, 1)
    assert conn.execute("SELECT source_row FROM answers WHERE question_id = 'q1'").fetchone()[0] == 1
    # s1 loaded before: a different q1 first (refused: the loaded one stands), then the loaded answer twice again
    later = [{**first[0], "answer": "C"}, first[0], first[0]] + answers_for("s2", "st2")
    put(s3, f"incoming/northfield/{DAY}/submissions/b.csv", csv_bytes(later))
    second = _ingest(conn, s3)
    assert (second.rows_loaded, second.rows_duplicate, second.rows_rejected) == (4, 2, 1)
    reasons = conn.execute("SELECT f.file_name, r.row_number, r.reason FROM rejected_rows r JOIN ingested_files f"
                           " USING (file_id) ORDER BY r.reject_id").fetchall()
    assert [(f, n) for f, n, _ in reasons] == [("a.csv", 7), ("b.csv", 1)]
    assert "loaded first (a.csv row 2)" in reasons[0][2] and "loaded first (a.csv row 1)" in reasons[1][2]
    assert conn.execute("SELECT count(*), count(DISTINCT (submission_id, question_id)) FROM answers").fetchone() \
        == (8, 8)


def test_clashes_across_chunks_are_still_found(conn, s3, monkeypatch):
    """A question answered again in a later chunk: _FileKeys sees it across chunks, the statement ranks it."""
    from gradeflow.intake import ingest

    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    rows = answers_for("s1", "st1") + [{**answers_for("s1", "st1")[0], "answer": "C"}, answers_for("s1", "st1")[1]]
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    report = _ingest(conn, s3)
    assert (report.rows_loaded, report.rows_rejected, report.rows_duplicate) == (4, 1, 1)
    assert "loaded first (a.csv row 1)" in conn.execute("SELECT reason FROM rejected_rows").fetchone()[0]
