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


def _drop_morning(s3, first: str, second: str) -> bytes:
    """The exam and `morning.csv`: submissions `first` (st1) and `second` (st2), and one rejected row; its bytes."""
    rows = answers_for(first, "st1") + answers_for(second, "st2", minute=5)
    rows.append({**answers_for("s3", "st3")[0], "question_id": "no-such-question"})  # a rejected row
    data = csv_bytes(rows)
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/morning.csv", data)
    return data


def test_a_sweep_writes_a_receipt_of_what_was_accepted(conn, s3):
    data = _drop_morning(s3, "s1", "s2")
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


def _receipt_objects(s3) -> dict[str, bytes]:
    return {k: s3.get_object(Bucket="gradeflow", Key=k)["Body"].read() for k in keys(s3, f"receipts/northfield/{DAY}/")}


def test_a_file_cut_off_after_its_commit_gets_the_receipt_it_would_have_had_from_the_next_sweep(conn, s3):
    """The receipt is written after the file's commit (while the next file loads): a worker killed between the
    commit and the receipt leaves a committed file in incoming/ with its archive unrecorded. The next sweep only
    finishes it: the receipt, byte for byte the one the file would have had, then the archive; nothing loads twice.
    A receipt cut off between its two objects gets only the missing one."""
    data = _drop_morning(s3, "s-é\"1", "=s2")
    ingest_institution(NORTH, conn, s3)
    written = _receipt_objects(s3)
    assert sorted(k.rsplit(".", 1)[1] for k in written) == ["csv", "json"]

    for lost in (sorted(written), [k for k in written if k.endswith(".csv")]):
        # As if the worker died after the commit: the file is back, its archive unrecorded, the receipt (or its
        # CSV) not written.
        for key in lost:
            s3.delete_object(Bucket="gradeflow", Key=key)
        put(s3, f"incoming/northfield/{DAY}/submissions/morning.csv", data)
        conn.execute("UPDATE ingested_files SET archived_key = NULL WHERE file_name = 'morning.csv'")
        conn.commit()
        report = ingest_institution(NORTH, conn, s3)
        assert (report.rows_loaded, report.files_loaded, report.failed) == (0, 0, [])
        assert _receipt_objects(s3) == written
        assert keys(s3, "incoming/") == [] and conn.execute(
            "SELECT count(*) FROM ingested_files WHERE archived_key IS NULL").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 8


def test_a_receipt_that_cannot_be_written_fails_its_file_and_the_next_sweep_writes_it(conn, s3, caplog):
    """A receipt put that fails after the commit is reported as the file's failure (the same line as a failure in
    its transaction), the file stays in incoming/ with its rows loaded once, and the next sweep writes the receipt
    and archives the file. The other files of the sweep are not held up."""
    import logging

    from botocore.exceptions import ClientError

    def refuse(params, **_):
        if params["Key"].startswith("receipts/") and "morning" in params["Key"]:
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "refused"}}, "PutObject")

    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/morning.csv", csv_bytes(answers_for("s1", "st1")))
    put(s3, f"incoming/northfield/{DAY}/submissions/noon.csv", csv_bytes(answers_for("s2", "st2", minute=5)))
    caplog.set_level(logging.INFO, logger="gradeflow.intake.ingest")
    s3.meta.events.register("before-parameter-build.s3.PutObject", refuse, unique_id="test-refuse-receipt")
    try:
        first = ingest_institution(NORTH, conn, s3)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", unique_id="test-refuse-receipt")
    key = f"incoming/northfield/{DAY}/submissions/morning.csv"
    assert first.failed == [key] and (first.files_loaded, first.rows_loaded) == (2, 4)  # the exam and noon.csv
    assert f"Ingest of {key} failed; it stays in incoming/ for the next sweep" in caplog.text
    assert keys(s3, "incoming/") == [key] and [k.rsplit("/", 1)[1].split(".")[0] for k in keys(
        s3, f"receipts/northfield/{DAY}/")] == ["noon", "noon"]
    assert conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 8  # morning's rows committed, once

    second = ingest_institution(NORTH, conn, s3)
    assert (second.failed, second.rows_loaded, second.files_loaded) == ([], 0, 0)
    assert keys(s3, "incoming/") == [] and conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 8
    written = _receipt_objects(s3)
    morning = json.loads(next(v for k, v in written.items() if "morning" in k and k.endswith(".json")))
    assert (morning["answers_accepted"], morning["submissions_accepted"], morning["status"]) == (4, 1, "loaded")
    assert [s["submission_id"] for s in morning["submissions"]] == ["s1"]
    assert sum(1 for k in written if "morning" in k) == 2


def test_a_receipt_gives_a_submission_continued_in_a_later_file_the_submitted_at_recorded_first(conn, s3):
    """A later file's answers to a submission loaded before are receipted with what GradeFlow recorded for it (the
    first load's student, exam and submitted_at), not with the later file's rows."""
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(answers_for("s1", "st1")[:2]))
    ingest_institution(NORTH, conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/b.csv", csv_bytes(answers_for("s1", "st1", minute=7)[2:]))
    ingest_institution(NORTH, conn, s3)
    [recorded] = conn.execute("SELECT submitted_at FROM submissions WHERE submission_id = 's1'").fetchone()
    later = [k for k in keys(s3, f"receipts/northfield/{DAY}/b.csv.") if k.endswith(".json")]
    receipt = json.loads(s3.get_object(Bucket="gradeflow", Key=later[0])["Body"].read())
    assert receipt["submissions"] == [{"submission_id": "s1", "student_id": "st1", "exam_id": "bio-101",
                                       "submitted_at": recorded.isoformat(), "answers": 2}]
    assert recorded.minute == 0
