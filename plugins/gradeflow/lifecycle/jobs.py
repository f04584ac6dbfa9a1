"""Batch jobs' life (`batch_jobs.status`): born prepared, then the Batch API's statuses as polled.

The transitions are core.states.JOB_TRANSITIONS (docs/answer-lifecycle.md, "A batch job"); a write that is
not one of them is refused with an error naming the job and both states. Callers (prepare, grading,
reruns) call these functions inside their own transaction. May import: gradeflow.core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradeflow.core import db
from gradeflow.core.states import BATCH_API_FINAL, JOB_STATES, JOB_TRANSITIONS, sources

if TYPE_CHECKING:
    from datetime import date

    import psycopg

    from gradeflow.core.config import Institution


def create_job(conn: psycopg.Connection, inst: Institution, **job: Any) -> dict:
    """None -> prepared: a job's row for an input file written; return {job_id, inserted}.

    `job` holds day, night, wave, fingerprint, attempt, model, input_key, request_count, est_input_tokens,
    est_output_tokens and input_bytes. A job of the same fingerprint is returned as it is (inserted false).
    """
    return db.fetch_all(conn, "lifecycle/insert_job", {"inst": inst.id, **job})[0]


def _move(conn: psycopg.Connection, inst: Institution, job_id: int, status: str, name: str,
          params: dict[str, Any]) -> None:
    if status not in JOB_STATES:
        raise ValueError(f"batch job {job_id}: unknown status {status!r}; known: {', '.join(JOB_STATES)}")
    moved = db.execute(conn, name, {"inst": inst.id, "job_id": job_id, "status": status,
                                    "from_states": sources(JOB_TRANSITIONS, status), **params})
    if not moved:
        rows = db.fetch_all(conn, "lifecycle/job_status", {"inst": inst.id, "job_id": job_id})
        if not rows:
            raise LookupError(f"batch job {job_id} of {inst.id} does not exist")
        raise ValueError(f"batch job {job_id}: {rows[0]['status']} -> {status} is not a transition "
                         f"(core.states.JOB_TRANSITIONS)")


def job_submitted(conn: psycopg.Connection, inst: Institution, job_id: int, batch_id: str, status: str,
                  provider: str) -> None:
    """prepared -> the provider's status of batch `batch_id`, made for this job (or found by its fingerprint)."""
    _move(conn, inst, job_id, status, "lifecycle/job_submitted", {"batch_id": batch_id, "provider": provider})


def job_state(conn: psycopg.Connection, inst: Institution, job_id: int, remote: Any) -> None:
    """The job's status as the API reports its batch now (`remote`, the SDK's Batch), with files and counts."""
    from psycopg.types.json import Jsonb

    counts = remote.request_counts.model_dump() if remote.request_counts else None
    errors = remote.errors.model_dump() if remote.errors else None
    _move(conn, inst, job_id, remote.status, "lifecycle/job_state", {
        "output_file_id": remote.output_file_id, "error_file_id": remote.error_file_id,
        "request_counts": Jsonb(counts), "errors": Jsonb(errors), "terminal": remote.status in BATCH_API_FINAL})


def job_refused(conn: psycopg.Connection, inst: Institution, job_id: int, detail: str) -> None:
    """prepared -> upload_refused: the provider refused the job's input file (HTTP 400); the job is closed."""
    from psycopg.types.json import Jsonb

    _move(conn, inst, job_id, "upload_refused", "lifecycle/job_state", {
        "output_file_id": None, "error_file_id": None, "request_counts": Jsonb(None),
        "errors": Jsonb({"data": [{"code": "upload_refused", "message": detail}]}), "terminal": True})


def withdraw_unsent(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """A rerun's day: prepared jobs never sent -> superseded, with their requests and the day's pending or
    deferred ones (the regrade writes them anew); return the requests withdrawn."""
    return db.execute(conn, "lifecycle/withdraw_unsent", {"inst": inst.id, "day": day})
