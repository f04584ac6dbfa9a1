"""Two lanes: a submissions file read ahead that shares no submission and no checksum with the file still loading
starts on a second connection while that one inserts (gradeflow.intake.ingest._Lanes). The same drop swept on one
lane and on two gives the same rows, rejects, counts, receipts and rejects reports; a file that shares a submission
with the file loading, or its bytes, waits for it (its clash is then found against the committed rows)."""

from __future__ import annotations

import json
import logging

from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put
from .test_ingest_ahead import _state

NORTH = get_institution("northfield")
LAKE = get_institution("lakeshore")
BIG = 10_000  # submissions of the first file (40,000 rows): it is still inserting when the next one is read


def _drop(s3, prefix: str) -> None:
    big = [row for n in range(BIG) for row in answers_for(f"b{n}", f"st{n}")]
    big[7]["submitted_at"] = "yesterday"  # row 8: a bad timestamp
    other = answers_for("c1", "stc1", minute=3) + answers_for("c2", "stc2", minute=4)
    other.append({**other[0], "answer": "D"})  # row 9: a second, different answer to c1/q1 (the first stands)
    shares = answers_for("d1", "std1", minute=6) + [{**answers_for("b5", "st5")[0], "answer": "A"}]  # b5 is big's
    waits = answers_for("f1", "stf1", minute=8)
    waits.append({**waits[0], "question_id": "q9"})  # row 5: not a question of bio-101 (waits)
    put(s3, f"incoming/{prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{prefix}/{DAY}/submissions/a-big.csv", csv_bytes(big))
    put(s3, f"incoming/{prefix}/{DAY}/submissions/b-other.jsonl", "\n".join(json.dumps(r) for r in other).encode())
    put(s3, f"incoming/{prefix}/{DAY}/submissions/c-shares.csv", csv_bytes(shares))
    put(s3, f"incoming/{prefix}/{DAY}/submissions/d-again.jsonl",
        "\n".join(json.dumps(r) for r in other).encode())  # b-other.jsonl's bytes again
    put(s3, f"incoming/{prefix}/{DAY}/submissions/e-waits.csv", csv_bytes(waits))


def _sorted_rejects(state: dict) -> dict:
    """Reject ids follow the commits: with two lanes a file may commit before the one started before it."""
    return {**state, "rejects": sorted(state["rejects"], key=lambda r: (r[0], r[1] or 0, r[2] or ""))}


def test_two_lanes_load_disjoint_files_at_once_with_the_same_result(conn, tenant_conn, admin_conn, s3, monkeypatch,
                                                                    caplog):
    _drop(s3, "northfield")
    _drop(s3, "lakeshore")
    caplog.set_level(logging.DEBUG, logger="gradeflow.intake.ingest")

    monkeypatch.setattr(ingest, "LANES", 1)
    alone = ingest.ingest_institution(NORTH, conn, s3)
    assert not [r for r in caplog.records if "beside" in r.getMessage()]
    monkeypatch.setattr(ingest, "LANES", 2)
    lake_conn = tenant_conn("lakeshore")
    lanes = ingest.ingest_institution(LAKE, lake_conn, s3)

    # b-other.jsonl started on the second lane while a-big.csv was inserting; c-shares.csv (b5 is a-big's) and
    # d-again.jsonl (b-other's bytes) did not start beside the file they depend on.
    beside = [r.getMessage() for r in caplog.records if "beside" in r.getMessage()]
    assert any("b-other.jsonl" in m and "a-big.csv" in m for m in beside), beside
    assert not any("c-shares.csv" in m and "a-big.csv" in m for m in beside), beside
    assert not any("d-again.jsonl" in m and "b-other.jsonl" in m for m in beside), beside

    assert {**lanes.as_dict(), "institution": None, "rejects_reports": None} == \
           {**alone.as_dict(), "institution": None, "rejects_reports": None}
    assert (alone.files_loaded, alone.files_duplicate, alone.rows_loaded) == (5, 1, 4 * BIG - 1 + 8 + 4 + 4)
    north, lake = _state(admin_conn, s3, "northfield"), _state(admin_conn, s3, "lakeshore")
    assert _sorted_rejects(north) == _sorted_rejects(lake)
    assert [r[:3] for r in _sorted_rejects(lake)["rejects"]] == [
        ("a-big.csv", 8, "submitted_at"), ("b-other.jsonl", 9, "answer"), ("c-shares.csv", 5, "answer"),
        ("e-waits.csv", 5, "question_id")]
    clash = next(r for r in lake["rejects"] if r[0] == "c-shares.csv")
    assert "loaded first (a-big.csv row 21)" in clash[4]  # found against a-big.csv's committed row
    assert (lake_conn.closed, lake_conn.info.transaction_status.name) == (False, "IDLE")


def test_one_lane_when_no_second_connection_can_be_opened(conn, s3, monkeypatch, caplog):
    _drop(s3, "northfield")

    def refused(_conn):
        raise db.psycopg.OperationalError("FATAL: sorry, too many clients already")

    monkeypatch.setattr(db, "sibling", refused)
    report = ingest.ingest_institution(NORTH, conn, s3)
    assert (report.files_loaded, report.files_duplicate, report.failed) == (5, 1, [])
    assert any("loads one file at a time" in r.getMessage() and "too many clients" in r.getMessage()
               for r in caplog.records)
