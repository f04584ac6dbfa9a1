"""A file's keys found while it is staged (ingest._FileKeys): the clash statement runs only for a file that can clash
or shares a submission with an earlier load, whatever the number of chunks it was staged in (across chunks
stage_clash_across_chunks.sql decides), and the owners taken from each chunk's first rows give the very rows,
rejects, counts and receipts that a file staged in one chunk gives."""

from __future__ import annotations

import json

from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put
from .test_ingest_ahead import _drop, _state

NORTH = get_institution("northfield")
LAKE = get_institution("lakeshore")


def _statements(monkeypatch) -> list[str]:
    """The names of the SQL files ingest fetches from, in order (the real calls, recorded on the way)."""
    names, fetch_all = [], db.fetch_all

    def recording(conn, name, params=None):
        names.append(name)
        return fetch_all(conn, name, params)

    monkeypatch.setattr(db, "fetch_all", recording)
    return names


def test_a_file_of_several_chunks_that_cannot_clash_runs_no_clash_statement(conn, s3, monkeypatch):
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)  # every file of the drop in several chunks
    _drop(s3, "northfield")
    names = _statements(monkeypatch)
    report = ingest.ingest_institution(NORTH, conn, s3)
    assert (report.files_loaded, report.rows_loaded) == (4, 14)
    # a.csv (nothing twice, nothing loaded before: s1 and s2 continued across chunks with their one owner) is not
    # ranked; b.jsonl (a clash, s1 loaded) and d.csv (s1 loaded before) are. e.csv (a.csv again, with the same exam
    # definitions: its waiting row still waits) is settled by a.csv's drop (checked_with) and not read again.
    assert names.count("ingest/clashing_rows") == 2
    assert names.count("ingest/any_owner_loaded") == 3  # and c.csv is unreadable: never staged


def _across(s3, prefix: str) -> None:
    """Files whose only clash is across chunks of two rows: t1's q1 again (a twin, then another answer) and t2 given
    to another student in its second chunk (new submissions: the drop before named s1 to s4)."""
    put(s3, f"incoming/{prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    s1, s2 = answers_for("t1", "st1"), answers_for("t2", "st2")
    twin = [s1[0], s1[1], s1[2], s1[0]]  # rows 1-2, 3-4: s1/q1 again in the second chunk
    other = [s1[0], s1[1], s1[2], {**s1[0], "answer": "C"}]
    owner = [s2[0], s2[1], {**s2[2], "student_id": "st9"}, s2[3]]
    clean = answers_for("t3", "st3") + answers_for("t4", "st4")  # t3 and t4 continued across chunks, no clash
    for name, rows in (("f.csv", twin), ("g.jsonl", other), ("h.csv", owner), ("i.csv", clean)):
        body = csv_bytes(rows) if name.endswith(".csv") else "\n".join(json.dumps(r) for r in rows).encode()
        put(s3, f"incoming/{prefix}/{DAY}/submissions/{name}", body)


def test_chunks_of_two_rows_load_what_one_chunk_loads(conn, tenant_conn, admin_conn, s3, monkeypatch):
    """The same drops for two institutions: northfield's files staged in one chunk each, lakeshore's in chunks of two
    rows (owners from each chunk's first rows, clashes across chunks found by the statement): the same tables,
    counts, rejects, receipts and rejects reports."""
    for prefix in ("northfield", "lakeshore"):
        _drop(s3, prefix)
    names = _statements(monkeypatch)
    whole = ingest.ingest_institution(NORTH, conn, s3)
    assert names.count("ingest/stage_clash_across_chunks") == 0
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    in_twos = ingest.ingest_institution(LAKE, tenant_conn("lakeshore"), s3)
    assert names.count("ingest/stage_clash_across_chunks") == 3  # a.csv, b.jsonl, d.csv: no chunk clashes
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 50_000)
    for prefix in ("northfield", "lakeshore"):
        _across(s3, prefix)
    whole2 = ingest.ingest_institution(NORTH, conn, s3)
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    in_twos2 = ingest.ingest_institution(LAKE, tenant_conn("lakeshore"), s3)
    for a, b in ((whole, in_twos), (whole2, in_twos2)):
        assert {**a.as_dict(), "institution": None, "rejects_reports": None} == \
               {**b.as_dict(), "institution": None, "rejects_reports": None}
    north, lake = _state(admin_conn, s3, "northfield"), _state(admin_conn, s3, "lakeshore")
    assert north == lake
    assert [r[:3] for r in north["rejects"] if r[0] in ("f.csv", "g.jsonl", "h.csv", "i.csv")] == [
        ("g.jsonl", 4, "answer"), ("h.csv", 3, "student_id")]
    assert (whole2.rows_loaded, whole2.rows_duplicate, whole2.rows_rejected) == (14, 4, 2)  # f: a twin; g: t1 again


def test_answers_loaded_before_and_sent_again_are_duplicates_beside_clashes_with_them(conn, s3):
    """A file naming a submission loaded before: rows giving the loaded answer again (first or later in the file) are
    duplicates and dropped before the ranking (drop_loaded_twins.sql); a different answer is refused whether it
    comes before or after them, and the loaded answer again under another student is an owner clash."""
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    first = answers_for("s1", "st1")
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(first))
    ingest.ingest_institution(NORTH, conn, s3)
    again = [first[0],  # row 1: q1 as loaded: a duplicate
             {**first[1], "answer": "true"}, first[1],  # row 2: another q2 (refused), row 3: q2 as loaded
             {**first[2], "student_id": "someone-else"},  # row 4: the loaded q3 under another student
             first[3], first[3]] + answers_for("s5", "st5")  # rows 5-6: q4 as loaded twice; rows 7-10 new
    put(s3, f"incoming/northfield/{DAY}/submissions/b.csv", csv_bytes(again))
    report = ingest.ingest_institution(NORTH, conn, s3)
    assert (report.rows_loaded, report.rows_duplicate, report.rows_rejected) == (4, 4, 2)
    assert conn.execute("SELECT row_number, field, reason FROM rejected_rows ORDER BY row_number").fetchall() == [
        (2, "answer", "a different answer to 'q2' of this submission was loaded first (a.csv row 2); the first one "
                      "stands"),
        (4, "student_id", "submission 's1' belongs to student 'st1', exam 'bio-101' (already loaded)")]
    assert conn.execute("SELECT f.file_name, count(*) FROM answers a JOIN ingested_files f ON f.file_id = "
                        "a.source_file_id GROUP BY 1 ORDER BY 1").fetchall() == [("a.csv", 4), ("b.csv", 4)]
