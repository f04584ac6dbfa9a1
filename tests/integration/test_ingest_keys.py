"""A file's keys read while it is staged (ingest._FileKeys): the clash statement runs only for a file that can clash
or shares a submission with an earlier load (whatever the number of chunks it was staged in), and the owners taken
from the file's first rows give the very rows, rejects, counts and receipts that the SQL over the whole stage gives."""

from __future__ import annotations

from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

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
    # a.csv (nothing twice, nothing loaded before) is not ranked; b.jsonl (a clash, s1 loaded), d.csv (s1 loaded
    # before) and e.csv (a.csv again, read again for its waiting row: every submission loaded before) are.
    assert names.count("ingest/clashing_rows") == 3
    assert names.count("ingest/any_owner_loaded") == 4  # and c.csv is unreadable: never staged


def test_owners_from_the_files_first_rows_load_what_the_whole_stage_gives(conn, tenant_conn, admin_conn, s3,
                                                                         monkeypatch):
    """The same drop for two institutions, in chunks of two rows: northfield with every file past KEY_ROWS (owners
    and clashes found by the SQL over the stage, as before), lakeshore with the keys kept (owners copied from the
    first rows, the clash statement only where something can clash): the same tables, counts, rejects, receipts."""
    monkeypatch.setattr(ingest, "CHUNK_ROWS", 2)
    _drop(s3, "northfield")
    _drop(s3, "lakeshore")
    names = _statements(monkeypatch)
    monkeypatch.setattr(ingest, "KEY_ROWS", 0)
    by_sql = ingest.ingest_institution(NORTH, conn, s3)
    assert names.count("ingest/clashing_rows") == 4
    monkeypatch.setattr(ingest, "KEY_ROWS", 500_000)
    names.clear()
    by_keys = ingest.ingest_institution(LAKE, tenant_conn("lakeshore"), s3)
    assert names.count("ingest/clashing_rows") == 3
    assert {**by_keys.as_dict(), "institution": None, "rejects_reports": None} == \
           {**by_sql.as_dict(), "institution": None, "rejects_reports": None}
    north, lake = _state(admin_conn, s3, "northfield"), _state(admin_conn, s3, "lakeshore")
    assert north == lake
    assert [r[:3] for r in north["rejects"]] == [
        ("a.csv", 6, "student_id"), ("a.csv", 9, "question_id"), ("b.jsonl", 5, "student_id"),
        ("b.jsonl", 6, "answer"), ("c.csv", None, None), ("d.csv", 1, None)]
