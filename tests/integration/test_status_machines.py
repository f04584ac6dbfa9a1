"""A batch job's status machine in the database: the CHECK of migration 013 and lifecycle.jobs' transitions."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from openai.types import Batch

from gradeflow import lifecycle
from gradeflow.core.config import get_institution

NORTH = get_institution("northfield")
DAY = date(2026, 6, 1)


def _job(conn, fingerprint: str = "f" * 64) -> int:
    with conn.transaction():
        row = lifecycle.create_job(conn, NORTH, day=DAY, night=DAY, wave=1, fingerprint=fingerprint, attempt=1,
                                   model=NORTH.model, input_key="k", request_count=1, est_input_tokens=10,
                                   est_output_tokens=10, input_bytes=100)
    assert row["inserted"]
    return row["job_id"]


def _remote(status: str) -> Batch:
    return Batch(id="batch_1", object="batch", endpoint="/v1/chat/completions", input_file_id="file_1",
                 completion_window="24h", status=status, created_at=0)


def _status(conn, job_id: int) -> str:
    return conn.execute("SELECT status FROM batch_jobs WHERE job_id = %s", (job_id,)).fetchone()[0]


def test_a_job_moves_forward_through_the_apis_statuses(conn):
    job_id = _job(conn)
    assert _status(conn, job_id) == "prepared"
    with conn.transaction():
        lifecycle.job_submitted(conn, NORTH, job_id, "batch_1", "validating", "openai_batch")
    for status in ("in_progress", "in_progress", "completed", "completed"):  # polling may see a state again
        with conn.transaction():
            lifecycle.job_state(conn, NORTH, job_id, _remote(status))
        assert _status(conn, job_id) == status


def test_a_job_does_not_move_back_or_to_an_unknown_status(conn):
    job_id = _job(conn)
    with conn.transaction():
        lifecycle.job_submitted(conn, NORTH, job_id, "batch_1", "completed", "openai_batch")
    with pytest.raises(ValueError, match=rf"batch job {job_id}: completed -> in_progress is not a transition"):
        lifecycle.job_state(conn, NORTH, job_id, _remote("in_progress"))
    with pytest.raises(ValueError, match="unknown status 'submitted'"):
        lifecycle.job_submitted(conn, NORTH, job_id, "batch_1", "submitted", "openai_batch")
    assert _status(conn, job_id) == "completed"


def test_the_column_refuses_a_status_outside_the_machine(conn):
    job_id = _job(conn)
    with pytest.raises(psycopg.errors.CheckViolation, match="batch_jobs_status_check"):
        conn.execute("UPDATE batch_jobs SET status = 'submitted' WHERE job_id = %s", (job_id,))
