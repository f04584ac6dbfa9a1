"""Receipts (the original notes: "a unique submission ID, recorded submission time, confirmation"): after each
sweep, every submissions file has `receipts/<prefix>/<day>/<file>.<file_id>.json` and `.csv`."""

from __future__ import annotations

import csv
import hashlib
import io
import json

from gradeflow.core.config import get_institution
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, keys, put

NORTH = get_institution("northfield")


def test_a_sweep_writes_a_receipt_of_what_was_accepted(conn, s3):
    rows = answers_for("s1", "st1") + answers_for("s2", "st2", minute=5)
    rows.append({**answers_for("s3", "st3")[0], "question_id": "no-such-question"})  # a rejected row
    data = csv_bytes(rows)
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/morning.csv", data)
    ingest_institution(NORTH, conn, s3)

    found = keys(s3, f"receipts/northfield/{DAY}/")
    assert [k.rsplit("/", 1)[-1].split(".", 1)[0] for k in found] == ["morning", "morning"]
    raw = s3.get_object(Bucket="gradeflow", Key=[k for k in found if k.endswith(".json")][0])["Body"].read()
    receipt = json.loads(raw)
    assert raw == json.dumps(receipt, indent=1).encode()  # written a submission at a time, as one dump writes it
    assert receipt["sha256"] == hashlib.sha256(data).hexdigest()
    assert receipt["status"] == "loaded" and receipt["rows"] == 9 and receipt["answers_accepted"] == 8
    assert receipt["rows_rejected"] == 1 and receipt["submissions_accepted"] == 2
    assert receipt["rejects_key"] in keys(s3, f"rejects/northfield/{DAY}/")
    recorded = dict(conn.execute("SELECT submission_id, submitted_at FROM submissions").fetchall())
    assert {s["submission_id"]: s["submitted_at"] for s in receipt["submissions"]} == {
        k: v.isoformat() for k, v in recorded.items() if k in ("s1", "s2")}
    assert "s3" not in {s["submission_id"] for s in receipt["submissions"]}  # refused: not receipted
    table = list(csv.DictReader(io.StringIO(s3.get_object(
        Bucket="gradeflow", Key=[k for k in found if k.endswith(".csv")][0])["Body"].read().decode())))
    assert [r["submission_id"] for r in table] == ["s1", "s2"] and table[0]["sha256"] == receipt["sha256"]

    # The same bytes dropped again: a duplicate, nothing new accepted, no second receipt.
    put(s3, f"incoming/northfield/{DAY}/submissions/morning.csv", data)
    ingest_institution(NORTH, conn, s3)
    assert len(keys(s3, f"receipts/northfield/{DAY}/")) == 2


def test_a_streamed_result_is_planned_for_every_row(conn):
    """A server-side cursor plans for its first tenth by default (cursor_tuple_fraction 0.1): fast-start nested
    loops that made a new institution's first big day ingest 25x slower (bench `first_day:ingest`, 293 s against
    12 s for 360,000 rows). stream_rows reads every row, so it plans for all of them, in its transaction only."""
    from gradeflow.core import db

    with conn.transaction():
        seen = [r for r in db.stream_rows(conn, "ingest/receipt_submissions", {"inst": "northfield", "file_id": 0})]
        assert seen == []
        assert conn.execute("SELECT current_setting('cursor_tuple_fraction')").fetchone()[0] == "1"
    assert conn.execute("SELECT current_setting('cursor_tuple_fraction')").fetchone()[0] == "0.1"


def test_a_receipt_of_ids_with_quotes_accents_and_formula_starts_is_the_dump_of_its_values(conn, s3):
    """The items are written from a template (json's own string encoder for each text, the count as an int): the
    JSON is byte for byte what one json.dumps(indent=1) writes, escapes included, and the CSV quotes formula starts."""
    ids = [("s-é\"1\\", "st-ü 1"), ("=HYPERLINK(1)", "@st2"), ("s\u20283", "-st3")]
    rows = [row for n, (sid, student) in enumerate(ids) for row in answers_for(sid, student, minute=n)]
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/odd.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)

    found = keys(s3, f"receipts/northfield/{DAY}/")
    raw = s3.get_object(Bucket="gradeflow", Key=[k for k in found if k.endswith(".json")][0])["Body"].read()
    receipt = json.loads(raw)
    assert raw == json.dumps(receipt, indent=1).encode()
    assert sorted((s["submission_id"], s["student_id"], s["answers"]) for s in receipt["submissions"]) == sorted(
        (sid, student, 4) for sid, student in ids)
    table = list(csv.DictReader(io.StringIO(s3.get_object(
        Bucket="gradeflow", Key=[k for k in found if k.endswith(".csv")][0])["Body"].read().decode())))
    assert sorted((r["submission_id"], r["student_id"]) for r in table) == sorted(
        ("'" + sid if sid[0] in "=@-" else sid, "'" + student if student[0] in "=@-" else student)
        for sid, student in ids)
