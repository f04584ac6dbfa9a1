"""Publish (06:00 local, next morning): validate the night's grades, release them, export to S3.

The gate: Great Expectations suites from expectations/ run over the day's answer outcomes and the
conservation summary. A failed gate releases nothing and fails the task, visibly. A release is
written in one transaction, only for the exact state that was validated (same fingerprint), and
only once per state: rerunning publish on an unchanged day releases nothing new.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from gradeflow import db, storage
from gradeflow.config import Institution

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

log = logging.getLogger(__name__)


class ReleaseBlocked(RuntimeError):
    """The gate did not pass: nothing was released. The message lists what failed."""


def day_counts(conn: psycopg.Connection, inst: Institution, day: date) -> dict:
    """Submissions, answers, outcomes, rejects, released version and cost of one day."""
    with conn.transaction():
        db.execute(conn, "bulk_plans")
        return db.fetch_all(conn, "publish/day_counts", {"inst": inst.id, "day": day})[0]


STATE_COLUMNS = (("institution", "string"), ("exam_day", "string"), ("submission_id", "string"),
                 ("question_id", "string"), ("max_points", "float64"), ("grade_count", "int32"),
                 ("in_review", "bool"), ("waiting", "bool"), ("state", "string"), ("pending_reason", "string"),
                 ("review_reason", "string"), ("score", "float64"), ("grader", "string"), ("grade_id", "int64"))
_FINGERPRINT_COLUMNS = ("submission_id", "question_id", "grade_id", "state", "pending_reason", "review_reason")


def answer_states(conn: psycopg.Connection, inst: Institution, day: date) -> pd.DataFrame:
    """One row per received answer with its outcome (grade count, review, score, grader).

    Computed in the database in one set-based query and streamed out with COPY into Arrow (a
    million rows in about a second), not fetched row by row.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    schema = pa.schema([(name, getattr(pa, kind)() if kind != "bool" else pa.bool_()) for name, kind in STATE_COLUMNS])
    buf = io.BytesIO()
    query = f"COPY ({db.sql('publish/answer_states').strip().rstrip(';')}) TO STDOUT (FORMAT csv, HEADER true)"
    with conn.transaction(), conn.cursor() as cur:
        db.execute(conn, "bulk_plans")
        with cur.copy(query, {"inst": inst.id, "day": day}) as copy:
            for chunk in copy:
                buf.write(chunk)
    table = pacsv.read_csv(
        io.BytesIO(buf.getvalue()),
        convert_options=pacsv.ConvertOptions(column_types=schema, true_values=["t"], false_values=["f"],
                                             strings_can_be_null=True, quoted_strings_can_be_null=False),
    ) if buf.tell() else schema.empty_table()
    return table.select([name for name, _ in STATE_COLUMNS]).to_pandas()


def fingerprint(states: pd.DataFrame) -> str:
    """Identity of the exact outcome state of a day (which grade, which review, for every answer).

    The rows come in the query's order; each field is written as text (a missing one as a NUL mark).
    """
    digest = hashlib.sha256()
    if len(states):
        text = [states[c].astype("string").fillna("\x00") for c in _FINGERPRINT_COLUMNS]
        joined = text[0]
        for column in text[1:]:
            joined = joined + "\x1f" + column
        digest.update("\n".join(joined.tolist()).encode())
    return digest.hexdigest()


def summary_frame(counts: dict, inst: Institution, day: date) -> pd.DataFrame:
    """The conservation summary row the day_summary suite checks."""
    import pandas as pd

    from gradeflow.validation import SUMMARY_COUNTS

    keys = SUMMARY_COUNTS
    return pd.DataFrame([{"institution": inst.id, "exam_day": str(day), **{k: int(counts[k]) for k in keys}}])


@dataclass
class GateResult:
    """The outcome of the release gate, as stored in validation_runs."""

    validation_id: int
    success: bool
    fingerprint: str
    failures: list[str]


def validate(conn: psycopg.Connection, inst: Institution, day: date) -> GateResult:
    """Run the GX suites over the day; record the run; return whether the day may be released."""
    from psycopg.types.json import Jsonb

    from gradeflow.validation import validate_day

    states = answer_states(conn, inst, day)
    counts = day_counts(conn, inst, day)
    frame = states.drop(columns=["grade_id", "state", "pending_reason", "review_reason"])
    outcome = validate_day(frame, summary_frame(counts, inst, day), institution=inst.id)
    fp = fingerprint(states)
    with conn.transaction():
        validation_id = db.fetch_all(conn, "publish/insert_validation", {
            "inst": inst.id, "day": day, "success": outcome.success, "results": Jsonb(outcome.to_dict()),
            "fingerprint": fp})[0]["validation_id"]
    failures = [f"{f.suite}.{f.expectation}({f.column or ''}): {f.details}" for f in outcome.failures()]
    log.info("Release gate %s %s: %s over %d answers (%d rule, %d model, %d human, %d in review, %d deferred, "
             "%d pending the model, %d received)%s", inst.id, day,
             "PASSED" if outcome.success else "FAILED", counts["answers"], counts["graded_rule"],
             counts["graded_llm"], counts["graded_human"], counts["in_review"], counts["deferred"],
             counts["pending_model"], counts["received"],
             "" if outcome.success else "; failures: " + "; ".join(failures))
    return GateResult(validation_id, outcome.success, fp, failures)


def release(conn: psycopg.Connection, inst: Institution, day: date, validation_id: int) -> dict:
    """Publish the validated state as a new release version, in one transaction (or reuse the last one)."""
    with conn.transaction():
        # One snapshot for the check and the copy: what is released is exactly what was validated.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"release:{inst.id}:{day}",))
        gate = db.fetch_all(conn, "publish/get_validation", {"inst": inst.id, "day": day,
                                                             "validation_id": validation_id})
        if not gate or not gate[0]["success"]:
            raise ReleaseBlocked(f"validation run {validation_id} of {inst.id} {day} did not pass: nothing released")
        current = fingerprint(answer_states(conn, inst, day))
        if current != gate[0]["fingerprint"]:
            raise ReleaseBlocked(f"the grades of {inst.id} {day} changed after validation {validation_id}; "
                                 "rerun the gate: nothing released")
        last = db.fetch_all(conn, "publish/last_release", {"inst": inst.id, "day": day})
        if last and last[0]["fingerprint"] == current:
            log.info("Release %s %s v%d already holds this state; nothing new to release", inst.id, day,
                     last[0]["version"])
            return {**last[0], "new": False}
        version = (last[0]["version"] + 1) if last else 1
        params = {"inst": inst.id, "day": day, "version": version, "fingerprint": current,
                  "validation_id": validation_id}
        release_id = db.fetch_all(conn, "publish/insert_release", params)[0]["release_id"]
        rows = db.execute(conn, "publish/insert_release_results", {**params, "release_id": release_id})
        db.execute(conn, "publish/finish_release", {"inst": inst.id, "release_id": release_id, "row_count": rows})
    log.info("Released %s %s v%d: %d result rows", inst.id, day, version, rows)
    return {"release_id": release_id, "version": version, "row_count": rows, "export_key": None, "new": True}


def export(conn: psycopg.Connection, s3, inst: Institution, day: date, release_id: int) -> str:
    """Write a release as Parquet to releases/<prefix>/<day>/results-v<N>.parquet (same key on rerun)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = db.fetch_all(conn, "publish/release_rows", {"inst": inst.id, "release_id": release_id})
    if any(r["institution_id"] != inst.id for r in rows):  # isolation guard, belt and braces
        raise RuntimeError(f"release {release_id} holds rows of another institution")
    version = rows[0]["version"] if rows else db.fetch_all(
        conn, "publish/last_release", {"inst": inst.id, "day": day})[0]["version"]
    table = pa.Table.from_pylist(rows, schema=_release_schema())
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    key = inst.key("releases", day, f"results-v{version}.parquet")
    storage.write_bytes(s3, key, buf.getvalue(), "application/vnd.apache.parquet")
    with conn.transaction():
        db.execute(conn, "publish/record_export", {"inst": inst.id, "release_id": release_id, "key": key})
    log.info("Exported %d rows of %s %s v%d to %s", len(rows), inst.id, day, version, key)
    return key


def _release_schema():
    import pyarrow as pa

    return pa.schema([
        ("institution_id", pa.string()), ("exam_day", pa.date32()), ("version", pa.int32()),
        ("exam_id", pa.string()), ("submission_id", pa.string()), ("student_id", pa.string()),
        ("question_id", pa.string()), ("status", pa.string()), ("score", pa.float64()),
        ("max_points", pa.float64()), ("grader", pa.string()), ("pending_reason", pa.string()),
        ("review_reason", pa.string()),
    ])
