"""Grade (20:00 local): submit the night's Batch API jobs, and collect their results.

Submitting is idempotent: a job that already has a batch id is reattached, never resubmitted;
a job whose create call succeeded but whose id was not saved (a crash in between) is found again
through its fingerprint in the batch metadata. Collecting joins results on custom_id, reads the
output and the error file, records tokens and cost per line and per job, fans grades out to every
merged answer, and sends every failed, refused, unparseable or missing line to human review.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from gradeflow import batch, db, lifecycle, storage
from gradeflow.config import OPENAI_CONN_ID, Institution
from gradeflow.prepare import grading_version

if TYPE_CHECKING:
    import psycopg
    from openai import OpenAI

log = logging.getLogger(__name__)

TERMINAL = batch.TERMINAL_STATUSES
COMPLETION_WINDOW = "24h"
REATTACH_SCAN_LIMIT = 1000  # how many recent batches to look through for a lost batch id


def openai_client(conn_id: str = OPENAI_CONN_ID) -> OpenAI:
    """The official SDK client, built by the Airflow OpenAI hook (base_url from the connection host)."""
    from airflow.providers.openai.hooks.openai import OpenAIHook

    return OpenAIHook(conn_id=conn_id).get_conn()


def batch_metadata(inst: Institution, day: date, job: dict) -> dict[str, str]:
    """Tags that let anyone find the batch again (<= 16 keys, values <= 512 chars)."""
    return {"gradeflow_institution": inst.id, "gradeflow_exam_day": str(day),
            "gradeflow_job": str(job["job_id"]), "gradeflow_fingerprint": job["fingerprint"]}


def find_remote_batch(client: OpenAI, fingerprint: str) -> Any | None:
    """A live (not failed/expired/cancelled) batch already created for this fingerprint, if any."""
    for seen, remote in enumerate(client.batches.list(limit=100)):
        if seen >= REATTACH_SCAN_LIMIT:
            break
        meta = remote.metadata or {}
        if meta.get("gradeflow_fingerprint") == fingerprint and remote.status not in ("failed", "expired", "cancelled"):
            return remote
    return None


def submit_jobs(conn: psycopg.Connection, s3, client: OpenAI, inst: Institution, day: date) -> list[int]:
    """Submit the day's unsubmitted jobs; return the ids of every job still to collect."""
    jobs = db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id, "day": day})
    created = reattached = 0
    for job in jobs:
        if job["openai_batch_id"]:
            continue
        remote = find_remote_batch(client, job["fingerprint"])
        if remote is None:
            remote = _create_batch(conn, s3, client, inst, day, job)
            created += 1
        else:
            reattached += 1
            log.info("Job %s: reattached to batch %s found by its fingerprint", job["job_id"], remote.id)
        with conn.transaction():
            db.execute(conn, "grade/record_submitted",
                       {"inst": inst.id, "job_id": job["job_id"], "batch_id": remote.id, "status": remote.status})
        job["openai_batch_id"] = remote.id
    log.info("Submit %s %s: %d open job(s): %d batch(es) created, %d reattached, %d already submitted",
             inst.id, day, len(jobs), created, reattached, len(jobs) - created - reattached)
    return [job["job_id"] for job in jobs]


def _create_batch(conn: psycopg.Connection, s3, client: OpenAI, inst: Institution, day: date, job: dict) -> Any:
    file_id = job["openai_file_id"]
    if not file_id:
        data = storage.read_bytes(s3, job["input_key"])
        uploaded = client.files.create(file=(job["input_key"].rsplit("/", 1)[-1], data), purpose="batch")
        file_id = uploaded.id
        with conn.transaction():
            db.execute(conn, "grade/record_file", {"inst": inst.id, "job_id": job["job_id"], "file_id": file_id})
    remote = client.batches.create(input_file_id=file_id, endpoint=batch.BATCH_ENDPOINT,
                                   completion_window=COMPLETION_WINDOW, metadata=batch_metadata(inst, day, job))
    log.info("Job %s: created batch %s with %d requests (~%d tokens)", job["job_id"], remote.id,
             job["request_count"], job["est_input_tokens"])
    return remote


def get_job(conn: psycopg.Connection, inst: Institution, job_id: int) -> dict:
    """One batch job of this institution (never another's), or a clear error."""
    rows = db.fetch_all(conn, "grade/get_job", {"inst": inst.id, "job_id": job_id})
    if not rows:
        raise LookupError(f"batch job {job_id} does not exist for institution {inst.id}")
    return rows[0]


@dataclass
class CollectReport:
    """What collecting one job found, in counts."""

    job_id: int
    batch_status: str
    collected: bool = False
    lines_ok: int = 0
    lines_failed: int = 0
    lines_missing: int = 0
    lines_requeued: int = 0
    answers_graded: int = 0
    answers_to_review: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _read_jsonl(client: OpenAI, file_id: str | None) -> dict[str, dict]:
    """Lines of an output or error file keyed by custom_id (order is not guaranteed: never by position)."""
    if not file_id:
        return {}
    text = client.files.content(file_id).text
    lines: dict[str, dict] = {}
    for raw in text.splitlines():
        if raw.strip():
            line = json.loads(raw)
            lines[str(line.get("custom_id"))] = line
    return lines


RETRYABLE_BATCH_CODES = frozenset({"token_limit_exceeded"})


def _batch_failure(remote: Any) -> tuple[str, bool]:
    """Why lines of this batch have no result, and whether sending them again can help."""
    errors = getattr(remote, "errors", None)
    data = getattr(errors, "data", None) or []
    if data:
        first = data[0]
        return f"batch {remote.status}: {first.code}: {first.message}", first.code in RETRYABLE_BATCH_CODES
    return f"batch {remote.status} without a result for this line", remote.status in ("expired", "cancelled")


def _review_reason_missing(retryable: bool) -> str:
    """A line with no result that will not be sent again: out of attempts, or the batch cannot succeed."""
    return "attempts_exhausted" if retryable else "batch_failed"


def collect_job(conn: psycopg.Connection, client: OpenAI, inst: Institution, job_id: int,
                allow_retry: bool = True) -> CollectReport:
    """Collect one finished job's results into grades and review, in one transaction.

    With allow_retry, lines that failed for a passing reason and have attempts left go back to
    pending for the next wave; without it (the last wave) every failure goes to review.
    """
    job = get_job(conn, inst, job_id)
    remote = client.batches.retrieve(job["openai_batch_id"])
    report = CollectReport(job_id, remote.status)
    _record_state(conn, inst, job_id, remote)
    if job["collected_at"] is not None or remote.status not in TERMINAL:
        report.collected = job["collected_at"] is not None
        log.info("Job %s: batch %s is %s; %s", job_id, remote.id, remote.status,
                 "already collected" if report.collected else "not finished, nothing to collect yet")
        return report
    lines = _read_jsonl(client, remote.error_file_id)
    lines.update(_read_jsonl(client, remote.output_file_id))
    requests = db.fetch_all(conn, "grade/job_requests", {"inst": inst.id, "job_id": job_id})
    with conn.transaction():
        failures, retries = _apply_lines(conn, inst, requests, lines, report, *_batch_failure(remote),
                                         allow_retry=allow_retry)
        for detail, cids in retries.items():
            report.lines_requeued += lifecycle.requeue(conn, inst, cids, detail)
        day = job["exam_day"]
        version = grading_version(conn, inst, day)
        report.answers_to_review += sum(lifecycle.route_doubtful(conn, inst, day, version).values())
        report.answers_graded = lifecycle.apply_model_grades(conn, inst, day, version)
        for (reason, detail), cids in failures.items():
            report.answers_to_review += lifecycle.to_review(conn, inst, cids, reason, detail)
        report.cost_usd = inst.cost_usd(report.input_tokens, report.output_tokens)
        db.execute(conn, "grade/record_collected", {"inst": inst.id, "job_id": job_id, "cost_usd": report.cost_usd,
                                                    "input_tokens": report.input_tokens,
                                                    "output_tokens": report.output_tokens})
    report.collected = True
    log.info("Job %s (batch %s, %s): %d lines ok, %d failed, %d missing, %d requeued for another attempt; "
             "%d answers graded, %d to review; tokens in %d out %d, $%.4f", job_id, remote.id, remote.status,
             report.lines_ok, report.lines_failed, report.lines_missing, report.lines_requeued,
             report.answers_graded, report.answers_to_review, report.input_tokens, report.output_tokens,
             report.cost_usd)
    return report


def _record_state(conn: psycopg.Connection, inst: Institution, job_id: int, remote: Any) -> None:
    from psycopg.types.json import Jsonb

    counts = remote.request_counts.model_dump() if remote.request_counts else None
    errors = remote.errors.model_dump() if remote.errors else None
    with conn.transaction():
        db.execute(conn, "grade/record_batch_state", {
            "inst": inst.id, "job_id": job_id, "status": remote.status, "output_file_id": remote.output_file_id,
            "error_file_id": remote.error_file_id, "request_counts": Jsonb(counts), "errors": Jsonb(errors),
            "terminal": remote.status in TERMINAL})


def _apply_lines(conn: psycopg.Connection, inst: Institution, requests: list[dict], lines: dict[str, dict],
                 report: CollectReport, missing_reason: str, missing_retryable: bool, allow_retry: bool = True):
    """Record each request's result; return the custom_ids for review (by reason and detail) and for another attempt.

    A line that failed for a passing reason is sent again (only that line) while it has attempts
    left; every other failure, and the last attempt's, goes to human review.
    """
    failures: dict[tuple[str, str], list[str]] = {}
    retries: dict[str, list[str]] = {}
    for req in requests:
        if req["status"] != "queued":
            continue
        may_retry = allow_retry and req["attempt"] < inst.max_attempts
        line = lines.get(req["custom_id"])
        if line is None:
            report.lines_missing += 1
            if missing_retryable and may_retry:
                retries.setdefault(missing_reason, []).append(req["custom_id"])
            else:
                key = (_review_reason_missing(missing_retryable), missing_reason)
                failures.setdefault(key, []).append(req["custom_id"])
            continue
        result = batch.parse_line(line, float(req["max_points"]))
        report.input_tokens += result.input_tokens
        report.output_tokens += result.output_tokens
        cost = inst.cost_usd(result.input_tokens, result.output_tokens)
        params = {**asdict(result), "inst": inst.id, "cost_usd": cost}
        if result.ok:
            report.lines_ok += 1
            db.execute(conn, "grade/record_llm_result", params)
        else:
            report.lines_failed += 1
            db.execute(conn, "grade/record_llm_failure", params)
            detail = f"model line failed: {result.error}"
            if result.retryable and may_retry:
                retries.setdefault(detail, []).append(req["custom_id"])
            else:
                key = (lifecycle.review_reason_for(result.code or "", result.retryable), detail)
                failures.setdefault(key, []).append(req["custom_id"])
    return failures, retries
