"""Publish (06:00 local, next morning): validate the night's grades, release them, export to S3.

The gate: Great Expectations suites from expectations/ run over the day's answer outcomes and the
conservation summary. A failed gate releases nothing and fails the task, visibly. A release is
written in one transaction, only for the exact state that was validated (same fingerprint), and
only once per state: rerunning publish on an unchanged day releases nothing new.
"""

from __future__ import annotations

import hashlib
import io
import json
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


def release(conn: psycopg.Connection, inst: Institution, day: date, validation_id: int,
            actor: str = "gradeflow") -> dict:
    """Commit the validated state as a new release version, in one transaction (or reuse the last one).

    The release is not visible yet: `export` writes its files and only then marks it exported
    (views `published_releases` / `published_results` show exported releases only).
    """
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
        grading_version = db.fetch_all(conn, "prepare/current_version", {"inst": inst.id, "day": day})[0]["version"]
        rows = db.execute(conn, "publish/insert_release_results", {**params, "release_id": release_id,
                                                                   "grading_version": grading_version})
        db.execute(conn, "publish/finish_release", {"inst": inst.id, "release_id": release_id, "row_count": rows})
        db.audit(conn, actor, "release", inst.id, day, {"release_id": release_id, "version": version, "rows": rows,
                                                         "fingerprint": current, "validation_id": validation_id,
                                                         "grading_version": grading_version})
    log.info("Released %s %s v%d: %d result rows", inst.id, day, version, rows)
    return {"release_id": release_id, "version": version, "row_count": rows, "export_key": None, "new": True}


def export(conn: psycopg.Connection, s3, inst: Institution, day: date, release_id: int,
           actor: str = "gradeflow") -> str:
    """Write a release's files, then make it visible; return the results key (same keys on a rerun).

    `releases/<prefix>/<day>/results-v<N>.parquet` (one row per answer), `submissions-v<N>.parquet`
    (one row per submission) and `reports/<prefix>/<day>/agreement-v<N>.json` are written first;
    only then is the release marked exported, in the audit log too. A failure in between leaves
    a release that readers do not see, and `repair_exports` (every publish run) finishes it.
    """
    import pyarrow as pa

    release = db.fetch_all(conn, "publish/get_release", {"inst": inst.id, "release_id": release_id})
    if not release:
        raise LookupError(f"release {release_id} does not exist for institution {inst.id}")
    version = release[0]["version"]
    params = {"inst": inst.id, "release_id": release_id}
    rows = db.fetch_all(conn, "publish/release_rows", params)
    subs = db.fetch_all(conn, "publish/submission_rows", params)
    if any(r["institution_id"] != inst.id for r in rows + subs):  # isolation guard, belt and braces
        raise RuntimeError(f"release {release_id} holds rows of another institution")
    key = inst.key("releases", day, f"results-v{version}.parquet")
    submissions_key = inst.key("releases", day, f"submissions-v{version}.parquet")
    agreement_key = inst.key("reports", day, f"agreement-v{version}.json")
    storage.write_bytes(s3, key, _parquet(pa.Table.from_pylist(rows, schema=_release_schema())),
                        "application/vnd.apache.parquet")
    storage.write_bytes(s3, submissions_key, _parquet(pa.Table.from_pylist(subs, schema=_submission_schema())),
                        "application/vnd.apache.parquet")
    agreement = agreement_report(conn, inst, day, release_id, version)
    storage.write_bytes(s3, agreement_key, json.dumps(agreement, indent=2).encode(), "application/json")
    from psycopg.types.json import Jsonb

    with conn.transaction():
        db.execute(conn, "publish/record_export", {**params, "key": key, "submissions_key": submissions_key,
                                                   "agreement_key": agreement_key, "agreement": Jsonb(agreement)})
        db.audit(conn, actor, "release_exported", inst.id, day, {
            "release_id": release_id, "version": version, "results_key": key, "submissions_key": submissions_key,
            "agreement_key": agreement_key, "rows": len(rows), "submissions": len(subs)})
    log.info("Exported %s %s v%d: %d answer rows to %s, %d submissions to %s; now visible", inst.id, day, version,
             len(rows), key, len(subs), submissions_key)
    return key


def agreement_report(conn: psycopg.Connection, inst: Institution, day: date, release_id: int, version: int) -> dict:
    """Model vs human on every answer of the release that has both; logged and returned for the report."""
    from gradeflow import agreement

    found = agreement.report(agreement.release_pairs(conn, inst, release_id))
    overall = found["overall"]
    log.info("Agreement %s %s v%d (model suggestion vs human grade): n=%d, pearson r=%s, QWK=%s, MAE=%s, "
             "changed by a human=%s", inst.id, day, version, overall["n"], overall["pearson_r"], overall["qwk"],
             overall["mae"], overall["changed_share"])
    for q in found["per_question"]:
        log.info("Agreement %s %s v%d %s: n=%d, r=%s, QWK=%s, MAE=%s, changed=%s", inst.id, day, version,
                 q["question_id"], q["n"], q["pearson_r"], q["qwk"], q["mae"], q["changed_share"])
    return {"institution_id": inst.id, "exam_day": str(day), "version": version, **found}


def repair_exports(conn: psycopg.Connection, s3, inst: Institution, actor: str = "gradeflow") -> list[int]:
    """Finish every release of the institution whose exports were cut off; return their release ids."""
    broken = db.fetch_all(conn, "publish/unexported_releases", {"inst": inst.id})
    for rel in broken:
        log.warning("Release %s %s v%d (committed %s) has no exports and is not visible: writing them now",
                    inst.id, rel["exam_day"], rel["version"], rel["released_at"])
        export(conn, s3, inst, rel["exam_day"], rel["release_id"], actor=actor)
    return [rel["release_id"] for rel in broken]


def _parquet(table) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def _release_schema():
    """results-v<N>.parquet: one row per answer (docs/releases.md)."""
    import pyarrow as pa

    return pa.schema([
        ("institution_id", pa.string()), ("exam_day", pa.date32()), ("version", pa.int32()),
        ("exam_id", pa.string()), ("submission_id", pa.string()), ("student_id", pa.string()),
        ("question_id", pa.string()), ("question_type", pa.string()), ("status", pa.string()),
        ("score", pa.float64()), ("max_points", pa.float64()), ("grader", pa.string()), ("model", pa.string()),
        ("confidence", pa.float64()), ("rationale", pa.string()), ("pending_reason", pa.string()),
        ("review_reason", pa.string()), ("grading_version", pa.int32()),
    ])


def _submission_schema():
    """submissions-v<N>.parquet: one row per submission (docs/releases.md)."""
    import pyarrow as pa

    return pa.schema([
        ("institution_id", pa.string()), ("exam_day", pa.date32()), ("version", pa.int32()),
        ("exam_id", pa.string()), ("submission_id", pa.string()), ("student_id", pa.string()),
        ("total_score", pa.float64()), ("total_max", pa.float64()), ("percent", pa.float64()),
        ("answers", pa.int32()), ("graded_rule", pa.int32()), ("graded_model", pa.int32()),
        ("graded_human", pa.int32()), ("pending", pa.int32()), ("complete", pa.bool_()),
    ])
