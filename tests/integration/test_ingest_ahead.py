"""Read-ahead: while a submissions file loads, the sweep reads and checks the next one in a worker thread
(gradeflow.intake.ingest._Ahead), and each committed file's receipt and archive are written in another while the
next file loads (_Behind). The same drop swept with and without them gives the same rows, rejects, counts,
receipts and rejects reports, whatever the files hold: bad rows, clashes across files, a file refused whole, a
file re-sent with rows waiting, a stray quote."""

from __future__ import annotations

import json
import logging

from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, keys, put

NORTH = get_institution("northfield")
LAKE = get_institution("lakeshore")


def _drop(s3, prefix: str) -> None:
    first = answers_for("s1", "st1") + answers_for("s2", "st2", q4="ATP")
    first[5]["student_id"] = ""  # row 6: required, is empty
    first.append({**first[0], "question_id": "q9"})  # row 9: not a question of bio-101 (waits: read again if re-sent)
    second = answers_for("s3", "st3", minute=5)
    second.append({**second[0], "submission_id": "s1", "student_id": "someone-else"})  # s1 is st1's (file a.csv)
    second.append({**answers_for("s2", "st2")[0], "answer": "C"})  # a different answer to s2/q1: the first stands
    third = csv_bytes(answers_for("s4", "st4", minute=9) + answers_for("s1", "st1")).decode()
    third = third.replace(",B,", ',"B or C,', 1)  # a stray quote: that row is refused, reading resumes after it
    put(s3, f"incoming/{prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{prefix}/{DAY}/submissions/a.csv", csv_bytes(first))
    put(s3, f"incoming/{prefix}/{DAY}/submissions/b.jsonl", "\n".join(json.dumps(r) for r in second).encode())
    put(s3, f"incoming/{prefix}/{DAY}/submissions/c.csv", b"submission_id,student_id\n\xff\xfe broken")
    put(s3, f"incoming/{prefix}/{DAY}/submissions/d.csv", third.encode())
    put(s3, f"incoming/{prefix}/{DAY}/submissions/e.csv", csv_bytes(first))  # a.csv's bytes again


def _state(admin_conn, s3, inst: str) -> dict:
    rows = {
        "answers": "SELECT a.submission_id, a.question_id, a.exam_id, a.answer_text, a.answer_sha256, a.source_row, "
                   "f.file_name FROM answers a JOIN ingested_files f ON f.file_id = a.source_file_id "
                   "WHERE a.institution_id = %s ORDER BY 1, 2",
        "submissions": "SELECT s.submission_id, s.student_id, s.exam_id, s.submitted_at, f.file_name "
                       "FROM submissions s JOIN ingested_files f ON f.file_id = s.source_file_id "
                       "WHERE s.institution_id = %s ORDER BY 1",
        "rejects": "SELECT file_name, row_number, field, value, reason FROM rejected_rows WHERE institution_id = %s "
                   "ORDER BY reject_id",
        "files": "SELECT file_name, kind, status, rows_total, rows_loaded, rows_rejected, rows_duplicate, rows_waiting "
                 "FROM ingested_files WHERE institution_id = %s ORDER BY file_id",
    }
    state = {name: admin_conn.execute(query, (inst,)).fetchall() for name, query in rows.items()}
    for kind in ("receipts", "rejects"):
        for key in keys(s3, f"{kind}/{inst}/"):
            body = s3.get_object(Bucket="gradeflow", Key=key)["Body"].read().decode()
            if key.endswith(".json"):  # what names the institution or its file ids
                body = {k: v for k, v in json.loads(body).items()
                        if k not in ("institution_id", "s3_key", "file_id", "rejects_key")}
            name = key.split("/")[3].rsplit(".", 2 if kind == "receipts" else 3)[0]  # a.csv.<file id>.rejects.csv
            state[f"{kind} {name} {key.rsplit('.', 1)[1]}"] = body
    return state


def test_a_sweep_reads_ahead_with_the_same_result(conn, tenant_conn, admin_conn, s3, monkeypatch, caplog):
    _drop(s3, "northfield")
    _drop(s3, "lakeshore")
    caplog.set_level(logging.DEBUG, logger="gradeflow.intake.ingest")

    monkeypatch.setattr(ingest, "READ_AHEAD", False)
    monkeypatch.setattr(ingest, "FINISH_BEHIND", False)  # and each file's receipt and archive before the next file
    alone = ingest.ingest_institution(NORTH, conn, s3)
    assert not [r for r in caplog.records if "ahead" in r.getMessage()]
    monkeypatch.setattr(ingest, "READ_AHEAD", True)
    monkeypatch.setattr(ingest, "FINISH_BEHIND", True)
    ahead = ingest.ingest_institution(LAKE, tenant_conn("lakeshore"), s3)

    # b.jsonl, c.csv, d.csv and e.csv were each read and checked in the worker while the file before them loaded.
    read_ahead = [r for r in caplog.records if r.getMessage().startswith("Read incoming/lakeshore/")]
    assert [r.getMessage().split()[1].rsplit("/", 1)[1] for r in read_ahead] == ["b.jsonl", "c.csv", "d.csv", "e.csv"]
    assert all(r.threadName.startswith("gradeflow-ingest-ahead") for r in read_ahead)
    assert "not UTF-8 text" in read_ahead[1].getMessage()

    assert {**ahead.as_dict(), "institution": None, "rejects_reports": None} == \
           {**alone.as_dict(), "institution": None, "rejects_reports": None}
    assert (alone.files_loaded, alone.files_rejected, alone.rows_loaded) == (4, 1, 14)
    north, lake = _state(admin_conn, s3, "northfield"), _state(admin_conn, s3, "lakeshore")
    assert north == lake
    assert [r[:3] for r in north["rejects"]] == [
        ("a.csv", 6, "student_id"), ("a.csv", 9, "question_id"), ("b.jsonl", 5, "student_id"),
        ("b.jsonl", 6, "answer"), ("c.csv", None, None), ("d.csv", 1, None)]
    assert sorted(k for k in north if k.startswith(("receipts", "rejects "))) == [
        "receipts a.csv csv", "receipts a.csv json", "receipts b.jsonl csv", "receipts b.jsonl json",
        "receipts c.csv csv", "receipts c.csv json", "receipts d.csv csv", "receipts d.csv json",
        "rejects a.csv csv", "rejects b.jsonl csv", "rejects c.csv csv", "rejects d.csv csv"]  # e.csv: a duplicate
