"""Publish (06:00 local, next morning): validate the night's grades, release them, export to S3.

The gate: Great Expectations suites from expectations/ run over the day's answer outcomes and the
conservation summary. A failed gate releases nothing and fails the task, visibly. A release is
written in one transaction, only for the exact state that was validated (same fingerprint), and
only once per state: rerunning publish on an unchanged day releases nothing new.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from gradeflow.core import db, storage
from gradeflow.core.config import Institution

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd
    import psycopg

log = logging.getLogger(__name__)


class ReleaseBlocked(RuntimeError):
    """The gate did not pass: nothing was released. The message lists what failed."""


class StateChanged(ReleaseBlocked):
    """The day's state changed between the gate and the release (grading still running): rerun the gate."""


def day_counts(conn: psycopg.Connection, inst: Institution, day: date) -> dict:
    """Submissions, answers, outcomes, rejects, released version and cost of one day."""
    with conn.transaction():
        db.execute(conn, "bulk_plans")
        return db.fetch_all(conn, "publish/day_counts", {"inst": inst.id, "day": day, "waiting": True})[0]


def has_answers(conn: psycopg.Connection, inst: Institution, day: date) -> bool:
    """Whether the day has any answer (cheap: the gate's full counts are read in its own snapshot)."""
    return db.fetch_all(conn, "publish/has_answers", {"inst": inst.id, "day": day})[0]["has_answers"]


# The frame the GX suite checks (gradeflow.release.gate.ANSWER_COLUMNS), as Arrow types.
STATE_COLUMNS = (("institution", "string"), ("exam_day", "string"), ("submission_id", "string"),
                 ("question_id", "string"), ("max_points", "float64"), ("grade_count", "int32"),
                 ("in_review", "bool"), ("waiting", "bool"), ("score", "float64"), ("grader", "string"))
EXPORT_ROW_GROUP = 131_072  # rows per Parquet row group
# results-v<N>.parquet's order: exam, submission, question, in byte order (sorted in Arrow, see _write_sorted).
RESULTS_ORDER = ("exam_id", "submission_id", "question_id")
# Up to this many bytes of answer rows the export sorts them in Arrow (held whole: the export's peak RSS at 1M answers
# was 840 MB with 268 MB of rows); a bigger release is sorted by PostgreSQL and streamed
# (publish/release_rows_in_order).
EXPORT_SORT_BYTES = 320 << 20


def _with_answer_rows(name: str) -> str:
    """include/sql/<name>.sql with its placeholders replaced by publish/answer_rows, publish/release_source,
    publish/row_hash and publish/release_rows.

    SQL text only (files of this package), never data: the data goes in as bind parameters.
    """
    text = db.sql(name)
    for part in ("answer_rows", "release_source", "row_hash", "release_rows"):
        lines = [line for line in db.sql(f"publish/{part}").splitlines() if not line.startswith("--")]
        text = text.replace("{" + part + "}", "\n".join(lines).strip().rstrip(";"))
    return text.strip().rstrip(";")


def copy_batches(conn: psycopg.Connection, query: str, params: dict, schema) -> Iterator:
    """Stream ``query`` out of Postgres as Arrow record batches of ``schema`` (bounded memory), in ``conn``'s
    transaction snapshot.

    Set-based and streamed: the rows are never held whole in Python. `db.arrow_batches` reads PostgreSQL's
    binary COPY with the ADBC driver straight into Arrow (psycopg would hand Python one message per row);
    each batch is cast to ``schema`` (the query's columns, by name and order). Text keeps newlines and quotes,
    and NULL stays apart from the empty string. Consume it inside the caller's transaction.
    """
    import pyarrow as pa

    db.check_tenant(conn, params.get("inst"))
    for batch in db.arrow_batches(conn, query, params):
        if batch.schema.names != schema.names:
            raise RuntimeError(f"query columns {batch.schema.names} differ from the expected {schema.names}")
        yield pa.RecordBatch.from_arrays([column.cast(field.type) for column, field in zip(batch.columns, schema,
                                                                                          strict=True)],
                                         schema=schema)


def _states_schema():
    import pyarrow as pa

    return pa.schema([(name, pa.bool_() if kind == "bool" else getattr(pa, kind)()) for name, kind in STATE_COLUMNS])


# The waiting states of answer_lifecycle, as day_counts names their counts.
WAITING_COUNTS = {"deferred": "deferred", "queued": "pending_model", "received": "received"}
SAMPLE_ORDER = ("submission_id", "question_id")  # the frame's order when a check fails (stable sample rows)


def answer_states(conn: psycopg.Connection, inst: Institution, day: date) -> tuple[pd.DataFrame, str, dict]:
    """The gate's frame (one row per received answer with its outcome), the fingerprint of those rows, and the
    counts of the waiting states among them (day_counts' deferred, pending_model and received).

    Computed in the database in one set-based query (publish/answer_states over publish/answer_rows) and
    streamed out as Arrow (copy_batches), not fetched row by row. The fingerprint is summed from the rows'
    hashes as they arrive: it is the one `state_fingerprint` computes in SQL for the same state. The frame is
    in no particular order (see `validate`).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = _states_schema()
    full = pa.schema([*schema, ("state", pa.string()), ("row_hash", pa.int64())])
    frames, count, total = [], 0, 0
    waiting = dict.fromkeys(WAITING_COUNTS.values(), 0)
    for batch in copy_batches(conn, _with_answer_rows("publish/answer_states"), {"inst": inst.id, "day": day}, full):
        count += batch.num_rows
        total += _exact_sum(batch.column("row_hash"))
        for item in pc.value_counts(batch.column("state")).to_pylist():
            if item["values"] in WAITING_COUNTS:
                waiting[WAITING_COUNTS[item["values"]]] += item["counts"]
        frames.append(batch.select(schema.names))
    table = pa.Table.from_batches(frames, schema=schema)
    return table.to_pandas(), f"v2:{count}:{total}", waiting


def _exact_sum(values) -> int:
    """The exact sum of an int64 Arrow array (no overflow): the high and low 32 bits summed apart."""
    import numpy as np

    array = values.to_numpy(zero_copy_only=False).astype(np.int64)
    high, low = array >> 32, array & 0xFFFFFFFF
    return (int(high.sum()) << 32) + int(low.sum())


def state_fingerprint(conn: psycopg.Connection, inst: Institution, day: date) -> str:
    """Identity of the exact outcome state of a day (every column of publish/answer_rows), computed in SQL.

    Order-independent and computed in one pass without pulling a row out of the database, so the gate
    and the release can both afford it: the release refuses a state whose fingerprint differs from the
    one the gate validated.
    """
    db.check_tenant(conn, inst.id)
    query = _with_answer_rows("publish/state_fingerprint")
    with conn.cursor() as cur:
        cur.execute(query, {"inst": inst.id, "day": day})
        return cur.fetchone()[0]


def _write_release_rows(conn: psycopg.Connection, inst: Institution, day: date, params: dict) -> tuple[int, str]:
    """Evaluate the day's outcome rows once and write them into release_results (publish/insert_release_results);
    return how many were written and their state fingerprint: the value `state_fingerprint` gives for the same
    state, summed from the hashes of exactly the rows written (the statement returns them)."""
    db.check_tenant(conn, inst.id)
    with conn.cursor() as cur:
        cur.execute(_with_answer_rows("publish/insert_release_results"), {**params, "inst": inst.id, "day": day})
        written = cur.fetchone()
    return written[0], written[1]


def summary_frame(counts: dict, inst: Institution, day: date) -> pd.DataFrame:
    """The conservation summary row the day_summary suite checks."""
    import pandas as pd

    from gradeflow.release.gate import SUMMARY_COUNTS

    keys = SUMMARY_COUNTS
    return pd.DataFrame([{"institution": inst.id, "exam_day": str(day), **{k: int(counts[k]) for k in keys}}])


@dataclass
class GateResult:
    """The outcome of the release gate, as stored in validation_runs."""

    validation_id: int
    success: bool
    fingerprint: str
    failures: list[str]
    counts: dict = field(default_factory=dict)  # the day's counts (day_counts), read in the gate's snapshot


def validate(conn: psycopg.Connection, inst: Institution, day: date) -> GateResult:
    """Run the GX suites over the day; record the run; return whether the day may be released."""
    from psycopg.types.json import Jsonb

    from gradeflow.release.gate import validate_day

    with conn.transaction():
        # One snapshot: the counts, the frame GX checks and the fingerprint the release must match.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        db.execute(conn, "bulk_plans")
        # The waiting states are counted from the validated rows (one evaluation of answer_lifecycle, not two).
        counts = db.fetch_all(conn, "publish/day_counts", {"inst": inst.id, "day": day, "waiting": False})[0]
        frame, fp, waiting = answer_states(conn, inst, day)
        counts = {**counts, **waiting}
    summary = summary_frame(counts, inst, day)
    outcome = validate_day(frame, summary, institution=inst.id)
    if not outcome.success:  # check the sorted frame again: the failures' sample rows are then the same every run
        frame = frame.sort_values(list(SAMPLE_ORDER), kind="stable", ignore_index=True)
        outcome = validate_day(frame, summary, institution=inst.id)
    del frame
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
    return GateResult(validation_id, outcome.success, fp, failures, counts)


def release(conn: psycopg.Connection, inst: Institution, day: date, validation_id: int,
            actor: str = "gradeflow") -> dict:
    """Commit the validated state as a new release version, in one transaction (or reuse the last one).

    The release is not visible yet: `export` writes its files and only then marks it exported
    (views `published_releases` / `published_results` show exported releases only).
    """
    # One release of a day at a time, and the lock is taken BEFORE the snapshot: a REPEATABLE READ
    # snapshot starts with the transaction's first statement, so a lock taken inside it would let a
    # waiting release read the state from before the release it waited for (and number its version again).
    lock = (f"release:{inst.id}:{day}",)  # keyed on the institution's own secret (gradeflow_lock_key, 016)
    conn.execute("SELECT pg_advisory_lock(gradeflow_lock_key(%s))", lock)
    try:
        with conn.transaction():
            # One snapshot for the check and the copy: what is released is exactly what was validated.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            gate = db.fetch_all(conn, "publish/get_validation", {"inst": inst.id, "day": day,
                                                                 "validation_id": validation_id})
            if not gate or not gate[0]["success"]:
                raise ReleaseBlocked(f"validation run {validation_id} of {inst.id} {day} did not pass: "
                                     "nothing released")
            validated = gate[0]["fingerprint"]
            db.execute(conn, "bulk_plans")
            last = db.fetch_all(conn, "publish/last_release", {"inst": inst.id, "day": day})
            if last and last[0]["fingerprint"] == validated:
                # Already released: only check that the day is still in that state (one aggregate, nothing written).
                if state_fingerprint(conn, inst, day) != validated:
                    raise StateChanged(f"the grades of {inst.id} {day} changed after validation {validation_id}; "
                                       "rerun the gate: nothing released")
                log.info("Release %s %s v%d already holds this state; nothing new to release", inst.id, day,
                         last[0]["version"])
                return {**last[0], "new": False}
            version = (last[0]["version"] + 1) if last else 1
            params = {"inst": inst.id, "day": day, "version": version, "fingerprint": validated,
                      "validation_id": validation_id}
            release_id = db.fetch_all(conn, "publish/insert_release", params)[0]["release_id"]
            grading_version = db.fetch_all(conn, "prepare/current_version", {"inst": inst.id, "day": day})[0]["version"]
            # One pass: the rows are evaluated and written together; their fingerprint must be the validated one,
            # or the transaction (release row and result rows) is rolled back.
            rows, current = _write_release_rows(conn, inst, day, {**params, "release_id": release_id,
                                                                  "grading_version": grading_version})
            if current != validated:
                raise StateChanged(f"the grades of {inst.id} {day} changed after validation {validation_id}; "
                                   "rerun the gate: nothing released")
            db.execute(conn, "publish/finish_release", {"inst": inst.id, "release_id": release_id, "row_count": rows})
            db.audit(conn, actor, "release", inst.id, day, {"release_id": release_id, "version": version, "rows": rows,
                                                             "fingerprint": current, "validation_id": validation_id,
                                                             "grading_version": grading_version})
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(gradeflow_lock_key(%s))", lock)
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
    import tempfile
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from psycopg.types.json import Jsonb

    release = db.fetch_all(conn, "publish/get_release", {"inst": inst.id, "release_id": release_id})
    if not release:
        raise LookupError(f"release {release_id} does not exist for institution {inst.id}")
    version = release[0]["version"]
    params = {"inst": inst.id, "release_id": release_id}
    key = inst.key("releases", day, f"results-v{version}.parquet")
    submissions_key = inst.key("releases", day, f"submissions-v{version}.parquet")
    agreement_key = inst.key("reports", day, f"agreement-v{version}.json")
    with tempfile.TemporaryDirectory(prefix="gradeflow-export-") as tmp:
        results_path, submissions_path = Path(tmp) / "results.parquet", Path(tmp) / "submissions.parquet"
        with conn.transaction():
            db.execute(conn, "bulk_plans")
            results = _read_table(conn, inst, db.sql("publish/release_rows").strip().rstrip(";"), params,
                                  _release_schema(), EXPORT_SORT_BYTES)
            submission_rows = db.sql("publish/submission_rows").strip().rstrip(";")
            if results is None:  # too big to hold: PostgreSQL sorts the rows and they are streamed (bounded memory)
                rows = _write_parquet(conn, inst, _with_answer_rows("publish/release_rows_in_order"), params,
                                      _release_schema(), results_path)
                subs = _write_parquet(conn, inst, submission_rows, params, _submission_schema(), submissions_path)
            else:
                # PostgreSQL sums the submissions (a second ADBC session, same snapshot) while Arrow sorts and writes
                # the answer rows here: the two overlap on two cores instead of running one after the other.
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradeflow-export") as pool:
                    submissions = pool.submit(_write_parquet, conn, inst, submission_rows, params,
                                              _submission_schema(), submissions_path)
                    try:
                        rows = _write_sorted(results, RESULTS_ORDER, results_path)
                    finally:
                        del results
                    subs = submissions.result()
        storage.upload_file(s3, key, results_path, "application/vnd.apache.parquet")
        storage.upload_file(s3, submissions_key, submissions_path, "application/vnd.apache.parquet")
    agreement = agreement_report(conn, inst, day, release_id, version)
    storage.write_bytes(s3, agreement_key, json.dumps(agreement, indent=2).encode(), "application/json")
    with conn.transaction():
        db.execute(conn, "publish/record_export", {**params, "key": key, "submissions_key": submissions_key,
                                                   "agreement_key": agreement_key, "agreement": Jsonb(agreement)})
        db.audit(conn, actor, "release_exported", inst.id, day, {
            "release_id": release_id, "version": version, "results_key": key, "submissions_key": submissions_key,
            "agreement_key": agreement_key, "rows": rows, "submissions": subs})
    log.info("Exported %s %s v%d: %d answer rows to %s, %d submissions to %s; now visible", inst.id, day, version,
             rows, key, subs, submissions_key)
    return key


def _checked_batches(conn: psycopg.Connection, inst: Institution, query: str, params: dict, schema) -> Iterator:
    """``query``'s rows as Arrow batches (copy_batches), each checked to hold only the institution's rows (isolation
    guard, belt and braces: row-level security already filters them)."""
    import pyarrow.compute as pc

    for batch in copy_batches(conn, query, params, schema):
        if batch.num_rows and not pc.all(pc.equal(batch.column("institution_id"), inst.id)).as_py():
            raise RuntimeError(f"release {params['release_id']} holds rows of another institution")
        yield batch


def _write_parquet(conn: psycopg.Connection, inst: Institution, query: str, params: dict, schema, path) -> int:
    """Stream ``query``'s rows into a Parquet file (zstd, row groups of EXPORT_ROW_GROUP rows), in the query's
    order; its rows. Memory holds one row group at most.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, pending, pending_rows = 0, [], 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in _checked_batches(conn, inst, query, params, schema):
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= EXPORT_ROW_GROUP:
                writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=EXPORT_ROW_GROUP)
                rows, pending, pending_rows = rows + pending_rows, [], 0
        if pending_rows or not rows:
            writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=EXPORT_ROW_GROUP)
            rows += pending_rows
    return rows


def _read_table(conn: psycopg.Connection, inst: Institution, query: str, params: dict, schema, limit: int):
    """``query``'s rows (checked, see _checked_batches) as one Arrow table, or None once they pass ``limit`` bytes
    (the rows read so far are dropped and the read is closed). publish/release_rows holds about 270 bytes per answer
    with the bench's rationales (268 MB at 1M answers); longer rationales make it bigger."""
    import pyarrow as pa

    batches, size = [], 0
    reader = _checked_batches(conn, inst, query, params, schema)
    try:
        for batch in reader:
            size += batch.nbytes
            if size > limit:
                log.info("Export: the rows pass %d MB; PostgreSQL sorts them instead", limit >> 20)
                return None
            batches.append(batch)
    finally:
        reader.close()
    return pa.Table.from_batches(batches, schema=schema)


def _write_sorted(table, order: tuple[str, ...], path) -> int:
    """Write ``table`` sorted by the ``order`` columns into a Parquet file (zstd, row groups of EXPORT_ROW_GROUP
    rows); its rows.

    Byte order (as COLLATE "C": Arrow compares strings by their UTF-8 bytes), whatever the database's collation.
    Arrow sorts a day's rows in a fraction of what PostgreSQL's sort of the wide rows cost (issue 18); the rows
    are taken in sorted order one row group at a time.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    indices = pc.sort_indices(table, sort_keys=[(column, "ascending") for column in order])
    with pq.ParquetWriter(path, table.schema, compression="zstd") as writer:
        for start in range(0, table.num_rows, EXPORT_ROW_GROUP):
            writer.write_table(table.take(indices[start:start + EXPORT_ROW_GROUP]), row_group_size=EXPORT_ROW_GROUP)
        if not table.num_rows:
            writer.write_table(table, row_group_size=EXPORT_ROW_GROUP)
    return table.num_rows


def agreement_report(conn: psycopg.Connection, inst: Institution, day: date, release_id: int, version: int) -> dict:
    """Model vs human on every answer of the release routed to review that has both, and the audit figures of
    the model grades released without a human (gradeflow.release.audit); logged and returned for the report."""
    from gradeflow.release import agreement

    found = agreement.report(agreement.release_pairs(conn, inst, release_id))
    overall = found["overall"]
    log.info("Agreement %s %s v%d (model suggestion vs human grade): n=%d, pearson r=%s, QWK=%s, MAE=%s, "
             "changed by a human=%s", inst.id, day, version, overall["n"], overall["pearson_r"], overall["qwk"],
             overall["mae"], overall["changed_share"])
    for q in found["per_question"]:
        log.info("Agreement %s %s v%d %s: n=%d, r=%s, QWK=%s, MAE=%s, changed=%s", inst.id, day, version,
                 q["question_id"], q["n"], q["pearson_r"], q["qwk"], q["mae"], q["changed_share"])
    from gradeflow.release import audit

    audited = audit.audit_report(conn, inst)  # every audit to date of the institution, routed work apart
    log.info("Audit %s (all audits to date, at %s v%d): %s", inst.id, day, version, audit.describe(audited))
    per_criterion = agreement.criteria_report(agreement.day_criteria_rows(conn, inst, day))
    for c in per_criterion:
        log.info("Agreement %s %s v%d %s criterion %s: n=%d, agreement=%s [%s, %s], kappa=%s", inst.id, day, version,
                 c["question_id"], c["criterion"], c["n"], c["agreement"], c["ci_low"], c["ci_high"], c["kappa"])
    return {"institution_id": inst.id, "exam_day": str(day), "version": version, **found,
            "per_criterion": per_criterion, "audit": audited}


def repair_exports(conn: psycopg.Connection, s3, inst: Institution, actor: str = "gradeflow") -> list[int]:
    """Finish every release of the institution whose exports were cut off; return their release ids."""
    broken = db.fetch_all(conn, "publish/unexported_releases", {"inst": inst.id})
    for rel in broken:
        log.warning("Release %s %s v%d (committed %s) has no exports and is not visible: writing them now",
                    inst.id, rel["exam_day"], rel["version"], rel["released_at"])
        export(conn, s3, inst, rel["exam_day"], rel["release_id"], actor=actor)
    return [rel["release_id"] for rel in broken]


def _release_schema():
    """results-v<N>.parquet: one row per answer (docs/releases.md)."""
    import pyarrow as pa

    return pa.schema([
        ("institution_id", pa.string()), ("exam_day", pa.date32()), ("version", pa.int32()),
        ("exam_id", pa.string()), ("submission_id", pa.string()), ("student_id", pa.string()),
        ("question_id", pa.string()), ("question_type", pa.string()), ("status", pa.string()),
        ("score", pa.float64()), ("max_points", pa.float64()), ("grader", pa.string()), ("model", pa.string()),
        ("confidence", pa.float64()), ("rationale", pa.string()), ("pending_reason", pa.string()),
        ("review_reason", pa.string()), ("grading_version", pa.int32()), ("suggested_score", pa.float64()),
        ("criteria", pa.string()), ("origin", pa.string()),
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
