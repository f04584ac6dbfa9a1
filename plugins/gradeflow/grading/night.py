"""Grade (20:00 local): reconcile with the API, submit the night's jobs in waves, collect, retry with backoff.

The night is a bounded loop of steps (`advance`), each short and idempotent, run by a deferrable
operator that waits between them without holding a worker (gradeflow.airflow.waiting):

1. Reconcile: every open job of the institution, from any earlier night, is reattached (by its batch
   id, or by its fingerprint in the batch metadata, whatever the batch's status) and collected once its
   batch is finished: an expired or cancelled orphan's finished lines are salvaged and paid once.
2. Retry wave: lines that failed for a passing reason go out again, only those lines, after an
   exponential backoff (`retry_backoff_seconds * 2**(attempt-1)`), while they have attempts left.
3. Submit: jobs are submitted in order while the organisation's enqueued-token cap and the
   institution's share of it have room (a reservation ledger under one advisory lock, across every
   institution); the next job goes when an earlier batch finishes.
4. Wait (deferred) for the first of the live batches to finish, the next wave's time, or room under
   the cap; stop at the deadline (the 06:00 release shows unfinished work as pending_model).

Every step takes the task's `Night` (gradeflow.grading.context): the institution, the night's date, its
connection, S3 client, provider, settings and deadline, built once per task.

Collecting joins results on custom_id (streamed line by line from the output and error files, each read by
`batch.read_line` into the fields judging needs), stages
them in one COPY and applies them with one statement per step; tokens and cost go to the ledger per
line and attempt (batch_lines), per job (batch_jobs) and per request across attempts (llm_requests).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from gradeflow import lifecycle
from gradeflow.core import db, storage
from gradeflow.core.config import Institution, OpenAISettings, load_openai_settings
from gradeflow.grading import batch, providers
from gradeflow.grading.context import Night
from gradeflow.grading.providers import BatchProvider

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)
alerts = logging.getLogger("gradeflow.airflow.alerts")

TERMINAL = batch.TERMINAL_STATUSES
REATTACH_SCAN_LIMIT = 2000  # how many recent batches to look through for lost batch ids
# Whole-batch failures whose lines may be sent again: the API refused the batch before running any of it.
RETRYABLE_BATCH_CODES = frozenset({"token_limit_exceeded"})
RETRY_BACKOFF_CAP_SECONDS = 3600.0  # the longest wait before a wave, however many refusals came before it
TOKEN_LIMIT_ALERT_AFTER = 3  # token-limit refusals in one night that raise an alert (and every 3 after)


def provider_for(inst: Institution, conn_id: str | None = None, settings: OpenAISettings | None = None,
                 **options: Any) -> BatchProvider:
    """The institution's batch provider (include/institutions.yaml `provider:`, default openai_batch).

    `conn_id` overrides the institution's connection (the operator's `conn_id`, for openai_batch only:
    the default is the shared gradeflow_openai)."""
    if conn_id and inst.provider == "openai_batch" and not inst.conn_id:
        options["conn_id"] = conn_id
    return providers.for_institution(inst, settings, **options)


def _job_provider(provider: BatchProvider, inst: Institution, job: dict) -> BatchProvider:
    """The job's batch is read through the provider that created it: switch `provider:` only between nights."""
    name = job.get("provider") or "openai_batch"
    if job.get("provider_batch_id") and name != provider.name:
        raise providers.ProviderError(
            f"job {job['job_id']} of {inst.id} has batch {job['provider_batch_id']} on provider {name!r} but the "
            f"night runs provider {provider.name!r}: collect it on {name!r} first (switch providers only when the "
            "institution has no open job: `grade/open_jobs`)")
    return provider


def batch_metadata(inst: Institution, day: date, job: dict) -> dict[str, str]:
    """Tags that let anyone find the batch again (<= 16 keys, values <= 512 chars)."""
    return {"gradeflow_institution": inst.id, "gradeflow_exam_day": str(day),
            "gradeflow_night": str(job.get("night") or day), "gradeflow_job": str(job["job_id"]),
            "gradeflow_fingerprint": job["fingerprint"]}


def remote_batches(provider: BatchProvider, inst: Institution) -> dict[str, list[Any]]:
    """The institution's batches in the provider's list (newest first), by the fingerprint in their metadata."""
    found: dict[str, list[Any]] = {}
    for seen, remote in enumerate(provider.list_batches()):
        if seen >= REATTACH_SCAN_LIMIT:
            break
        meta = remote.metadata or {}
        if meta.get("gradeflow_institution") == inst.id and meta.get("gradeflow_fingerprint"):
            found.setdefault(meta["gradeflow_fingerprint"], []).append(remote)
    return found


def _pick(candidates: list[Any]) -> Any:
    """Of several batches made for one job: a live or completed one, else the newest (expired, cancelled...)."""
    for wanted in (lambda b: b.status not in TERMINAL, lambda b: b.status == "completed", lambda b: True):
        for remote in candidates:
            if wanted(remote):
                return remote
    raise ValueError("no candidates")


def get_job(conn: psycopg.Connection, inst: Institution, job_id: int) -> dict:
    """One batch job of this institution (never another's), or a clear error."""
    rows = db.fetch_all(conn, "grade/get_job", {"inst": inst.id, "job_id": job_id})
    if not rows:
        raise LookupError(f"batch job {job_id} does not exist for institution {inst.id}")
    return rows[0]


# ------------------------------------------------------------------------ the shared enqueued-token cap


def reserve(night: Night, job: dict) -> bool:
    """Reserve the job's input tokens under the organisation's cap and the institution's share; False if no room.

    One advisory lock serialises every reserver of every institution, so two institutions can never
    both see the same room. A job's reservation is released when its batch is seen finished. A
    provider without a shared enqueued-token queue (openai_chat) needs no reservation.
    """
    conn, inst, provider = night.conn, night.inst, night.provider
    settings = night.settings or load_openai_settings()
    if provider is not None and provider.limits().enqueued_token_cap is None:
        return True
    tokens = int(job["est_input_tokens"])
    with conn.transaction():
        row = db.fetch_all(conn, "grade/reserve", {
            "job_id": job["job_id"], "tenant": inst.id, "model": job["model"], "tokens": tokens,
            "cap": settings.enqueued_token_cap, "share_cap": settings.institution_cap()})[0]
    if not row["reserved"]:
        log.info("Job %s (~%d tokens) waits for room: organisation %d/%d enqueued, %s %d/%d", job["job_id"],
                 tokens, row["org_tokens"], settings.enqueued_token_cap, inst.id, row["tenant_tokens"],
                 settings.institution_cap())
    return bool(row["reserved"])


def release_reservation(conn: psycopg.Connection, inst: Institution, job_id: int) -> None:
    """The job's batch is finished (or was never created): its tokens no longer count against the cap."""
    with conn.transaction():
        db.fetch_all(conn, "grade/release_reservation", {"job_id": job_id, "tenant": inst.id})


# --------------------------------------------------------------------------------------- submitting


def submit_ready(night: Night) -> tuple[int, int]:
    """Submit unsubmitted open jobs in order while the cap has room; return (submitted, still waiting).

    Strict order: a job that does not fit stops the submission (a smaller later job does not overtake).
    """
    night = replace(night, settings=night.settings or load_openai_settings())
    conn, inst, provider = night.conn, night.inst, _provider(night)
    waiting = [j for j in db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id}) if not j["provider_batch_id"]]
    submitted = 0
    for job in waiting:
        if not reserve(night, job):
            break
        try:
            remote = _create_batch(night, job)
        except Exception as exc:
            release_reservation(conn, inst, job["job_id"])
            if not _is_bad_request(exc):
                raise
            _refuse_upload(conn, inst, job, exc)
            continue  # the jobs behind it go on: a refused file never blocks them
        with conn.transaction():
            lifecycle.job_submitted(conn, inst, job["job_id"], remote.id, remote.status, provider.name)
        submitted += 1
    return submitted, len(waiting) - submitted


def _is_bad_request(exc: Exception) -> bool:
    """A 400 from the API on upload or create: the file itself is refused (over a line or byte limit...)."""
    return getattr(exc, "status_code", None) == 400  # the SDK's BadRequestError, whichever provider raised it


def _provider(night: Night) -> BatchProvider:
    """The night's provider; a Night built without one cannot talk to a model service."""
    if night.provider is None:
        raise providers.ProviderError(f"no batch provider given for {night.inst.id} night {night.day}")
    return night.provider


def _refuse_upload(conn: psycopg.Connection, inst: Institution, job: dict, exc: Exception) -> None:
    """The API refused the job's file (a 400): split it. Its lines go back to pending, their attempt given
    back, and the next wave cuts them into jobs of half this one's size (until one is accepted); a job of
    one line that is refused goes to human review (invalid_request). The job is closed, never retried as is."""
    detail = f"the API refused the job's file (HTTP 400): {str(exc)[:400]}"
    cids = [r["custom_id"] for r in db.fetch_all(conn, "grade/job_requests", {"inst": inst.id,
                                                                             "job_id": job["job_id"]})
            if r["status"] == "queued"]
    with conn.transaction():
        lifecycle.job_refused(conn, inst, job["job_id"], detail)
        if len(cids) > 1:
            requeued, reviewed = lifecycle.requeue_unrun(conn, inst, cids, detail), 0
        else:
            requeued, reviewed = 0, lifecycle.to_review(conn, inst, cids, "invalid_request", detail)
        db.execute(conn, "grade/record_collected", {"inst": inst.id, "job_id": job["job_id"], "cost_usd": 0,
                                                    "input_tokens": 0, "output_tokens": 0, "requeued": requeued})
    log.warning("Job %s (%d requests): %s; %s", job["job_id"], job["request_count"], detail,
                f"its {requeued} line(s) go out again in jobs of at most {max(1, job['request_count'] // 2)}"
                if requeued else f"its one line goes to human review ({reviewed} answer(s))")


def submit_jobs(night: Night) -> list[int]:
    """Reconcile, then submit what fits under the cap; return the ids of every job still to collect.

    (Every open job of the institution is considered, whatever its day.)
    """
    conn, inst = night.conn, night.inst
    reconcile(night, collect=False)
    created, waiting = submit_ready(night)
    jobs = db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id})
    log.info("Submit %s: %d batch(es) created, %d job(s) waiting for room under the enqueued-token cap, "
             "%d open job(s)", inst.id, created, waiting, len(jobs))
    return [job["job_id"] for job in jobs]


def _create_batch(night: Night, job: dict) -> Any:
    conn, s3, inst, provider = night.conn, night.s3, night.inst, _provider(night)
    file_id = job["provider_file_id"]
    if not file_id or job.get("provider") != provider.name:
        data = b"" if provider.runs_locally else storage.read_bytes(s3, job["input_key"])
        file_id = provider.upload(job["input_key"].rsplit("/", 1)[-1], data, source_key=job["input_key"])
        with conn.transaction():
            db.execute(conn, "grade/record_file", {"inst": inst.id, "job_id": job["job_id"], "file_id": file_id,
                                                   "provider": provider.name})
    remote = provider.create(file_id, batch_metadata(inst, job["exam_day"], job))
    log.info("Job %s: created batch %s with %d requests (~%d input tokens), wave %d of night %s", job["job_id"],
             remote.id, job["request_count"], job["est_input_tokens"], job["wave"], job["night"])
    return remote


# ---------------------------------------------------------------------------------------- reconcile


@dataclass
class ReconcileReport:
    """What reconciling the institution's open jobs found."""

    open_jobs: int = 0
    reattached: int = 0
    collected: int = 0
    still_running: list[str] = field(default_factory=list)
    unsubmitted: int = 0


def reconcile(night: Night, collect: bool = True, allow_retry: bool = True) -> ReconcileReport:
    """Reattach every open job of the institution (any day) and collect the finished ones.

    A job without a batch id is looked up by its fingerprint in the API's batch list: a batch made for
    it, whatever its status (live, completed, expired, cancelled), is reattached instead of sending
    the work again; an expired orphan's finished lines are collected and paid once.
    """
    conn, inst, provider = night.conn, night.inst, _provider(night)
    report = ReconcileReport()
    jobs = db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id})
    report.open_jobs = len(jobs)
    index: dict[str, list[Any]] | None = None
    for job in jobs:
        if not job["provider_batch_id"]:
            if index is None:
                index = remote_batches(provider, inst)
            candidates = index.get(job["fingerprint"])
            if not candidates:
                release_reservation(conn, inst, job["job_id"])  # a reservation left by a crash before create
                report.unsubmitted += 1
                continue
            remote = _pick(candidates)
            with conn.transaction():
                lifecycle.job_submitted(conn, inst, job["job_id"], remote.id, remote.status,
                                    provider.name)
            report.reattached += 1
            log.warning("Job %s (night %s): reattached to batch %s (%s) found by its fingerprint; its id had been "
                        "lost; nothing is sent twice", job["job_id"], job["night"], remote.id, remote.status)
        if not collect:
            continue
        result = collect_job(night, job["job_id"], allow_retry=allow_retry)
        if result.collected:
            report.collected += 1
        else:
            report.still_running.append(result.batch_id or "")
    return report


# ----------------------------------------------------------------------------------------- collecting


@dataclass
class CollectReport:
    """What collecting one job found, in counts."""

    job_id: int
    batch_status: str
    collected: bool = False
    batch_id: str | None = None
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


def _batch_failure(remote: Any) -> tuple[str, str | None]:
    """Why lines of this batch have no result, and the batch-level error code (None if not a failure)."""
    errors = getattr(remote, "errors", None)
    data = getattr(errors, "data", None) or []
    if data:
        first = data[0]
        return f"batch {remote.status}: {first.code}: {first.message}", first.code
    return f"batch {remote.status} without a result for this line", None


_STAGE_COLUMNS = ("custom_id", "ok", "score", "raw_score", "rationale", "confidence", "input_tokens",
                  "output_tokens", "cost_usd", "error", "outcome", "decisions", "evidence_ok",
                  "confidence_source")


def collect_job(night: Night, job_id: int, allow_retry: bool = True) -> CollectReport:
    """Collect one finished job's results into grades, review and retries, in one transaction.

    A line that failed for a passing reason (expired, cancelled, rate limit, timeout, conflict, server error)
    goes back to pending for the next wave while it has attempts left (and allow_retry); a batch the API refused
    for the enqueued-token cap goes back whole, its attempt given back; every other failure, and a
    line out of attempts, goes to human review with its reason.
    """
    conn, inst = night.conn, night.inst
    job = get_job(conn, inst, job_id)
    provider = _job_provider(_provider(night), inst, job)
    remote = provider.work(job["provider_batch_id"])  # a remote batch is only read; a local one moves on a chunk
    report = CollectReport(job_id, remote.status, batch_id=remote.id)
    _record_state(conn, inst, job_id, remote)
    if job["collected_at"] is not None or remote.status not in TERMINAL:
        report.collected = job["collected_at"] is not None
        if report.collected:
            release_reservation(conn, inst, job_id)
        log.info("Job %s: batch %s is %s; %s", job_id, remote.id, remote.status,
                 "already collected" if report.collected else "not finished: collected by a later step or run")
        return report
    requests = {r["custom_id"]: r for r in db.fetch_all(conn, "grade/job_requests", {"inst": inst.id,
                                                                                    "job_id": job_id})}
    missing_detail, batch_code = _batch_failure(remote)
    refused_whole = remote.status == "failed" and batch_code in RETRYABLE_BATCH_CODES
    rows, failures, retries, unrun = [], {}, {}, []
    seen: set[str] = set()
    for raw in _chain(provider.iter_raw_lines(remote.error_file_id), provider.iter_raw_lines(remote.output_file_id)):
        line = batch.read_line(raw)
        cid = str(line.get("custom_id"))
        req = requests.get(cid)
        if req is None or req["status"] != "queued" or cid in seen:
            continue  # not ours, already settled, or a duplicate line: never applied (or paid) twice
        seen.add(cid)
        result = batch.parse_line(line, float(req["max_points"]), req["rubric_items"], req["answer_text"])
        cost = provider.cost_usd(result.input_tokens, result.output_tokens)
        report.input_tokens += result.input_tokens
        report.output_tokens += result.output_tokens
        may_retry = allow_retry and req["attempt"] < inst.max_attempts
        if result.ok:
            report.lines_ok += 1
            outcome = "graded"
        else:
            report.lines_failed += 1
            detail = f"model line failed: {result.error}"
            if result.retryable and may_retry:
                retries.setdefault(detail, []).append(cid)
                outcome = "retry"
            else:
                reason = lifecycle.review_reason_for(result.code or "", result.retryable)
                failures.setdefault((reason, detail), []).append(cid)
                outcome = "review"
        rows.append((cid, result.ok, result.score, result.raw_score, result.rationale, result.confidence,
                     result.input_tokens, result.output_tokens, cost, result.error, outcome,
                     None if result.decisions is None else json.dumps(list(result.decisions)), result.evidence_ok,
                     result.confidence_source))
    for cid, req in requests.items():
        if req["status"] != "queued" or cid in seen:
            continue
        report.lines_missing += 1
        if refused_whole:
            unrun.append(cid)
            outcome = "unrun"
        elif remote.status in ("expired", "cancelled") and allow_retry and req["attempt"] < inst.max_attempts:
            retries.setdefault(missing_detail, []).append(cid)
            outcome = "retry"
        else:
            retryable = remote.status in ("expired", "cancelled")
            failures.setdefault(("attempts_exhausted" if retryable else "batch_failed", missing_detail),
                                []).append(cid)
            outcome = "review"
        rows.append((cid, False, None, None, None, None, 0, 0, 0, missing_detail[:500], outcome, None, None, None))
    report.cost_usd = round(sum(r[8] for r in rows), 6)
    with conn.transaction():
        db.execute(conn, "bulk_plans")  # hash joins over the job's lines: no per-row loop on stale statistics
        db.execute(conn, "grade/create_collect_stage")
        with conn.cursor() as cur, cur.copy(f"COPY collected_lines ({', '.join(_STAGE_COLUMNS)}) FROM STDIN") as cp:
            for row in rows:
                cp.write_row(row)
        db.execute(conn, "grade/record_ledger", {"inst": inst.id, "job_id": job_id})
        lifecycle.grade_lines(conn, inst, job_id)  # and every line's tokens and cost onto its request
        for detail, cids in retries.items():
            report.lines_requeued += lifecycle.requeue(conn, inst, cids, detail)
        if unrun:
            report.lines_requeued += lifecycle.requeue_unrun(conn, inst, unrun, missing_detail)
        day = job["exam_day"]
        version = lifecycle.grading_version(conn, inst, day)
        report.answers_to_review += sum(lifecycle.route_doubtful(conn, inst, day, version, job_id).values())
        report.answers_graded = lifecycle.apply_model_grades(conn, inst, day, version, job_id)
        for (reason, detail), cids in failures.items():
            report.answers_to_review += lifecycle.to_review(conn, inst, cids, reason, detail)
        db.execute(conn, "grade/record_collected", {"inst": inst.id, "job_id": job_id, "cost_usd": report.cost_usd,
                                                    "input_tokens": report.input_tokens,
                                                    "output_tokens": report.output_tokens,
                                                    "requeued": report.lines_requeued})
    release_reservation(conn, inst, job_id)
    report.collected = True
    log.info("Job %s (batch %s, %s%s): %d lines ok, %d failed, %d missing, %d requeued for another attempt; "
             "%d answers graded, %d to review; tokens in %d out %d (estimated in %d out %d), $%.4f", job_id,
             remote.id, remote.status, f", {batch_code}" if batch_code else "", report.lines_ok,
             report.lines_failed, report.lines_missing, report.lines_requeued, report.answers_graded,
             report.answers_to_review, report.input_tokens, report.output_tokens, job["est_input_tokens"],
             job["est_output_tokens"], report.cost_usd)
    if refused_whole:
        log.warning("Job %s: the API refused batch %s for the organisation's enqueued-token cap (%s); its %d lines "
                    "are requeued, not reviewed, and go out in a later wave", job_id, remote.id, batch_code,
                    len(unrun))
        _alert_refusals(conn, inst, job)
    return report


def _alert_refusals(conn: psycopg.Connection, inst: Institution, job: dict) -> None:
    """Every TOKEN_LIMIT_ALERT_AFTER-th token-limit refusal of a night raises an alert: the real cap is lower
    than the configured one, and waiting longer and cutting jobs smaller is all the night can do alone."""
    refusals = db.fetch_all(conn, "grade/night_refusals", {"inst": inst.id, "night": job["night"]})[0]["refusals"]
    if refusals and refusals % TOKEN_LIMIT_ALERT_AFTER == 0:
        alerts.error("GRADEFLOW ALERT token limit: the API refused %d batch(es) of %s night %s whole "
                     "(token_limit_exceeded): the organisation's real enqueued-token cap is below the configured "
                     "share. Jobs are halved and sent again after an exponential backoff (at most %.0f s); lower "
                     "openai.enqueued_token_cap or max_share_per_institution in institutions.yaml",
                     refusals, inst.id, job["night"], RETRY_BACKOFF_CAP_SECONDS)


def _chain(*iterables):
    for it in iterables:
        yield from it


def _record_state(conn: psycopg.Connection, inst: Institution, job_id: int, remote: Any) -> None:
    with conn.transaction():
        lifecycle.job_state(conn, inst, job_id, remote)


def ledger(conn: psycopg.Connection, inst: Institution, night: date) -> dict:
    """The night's token ledger: estimated vs actual tokens (and their ratio), cost, waves, attempts."""
    row = db.fetch_all(conn, "grade/ledger_summary", {"inst": inst.id, "night": night})[0]
    est = (row["est_input_tokens"] or 0) + (row["est_output_tokens"] or 0)
    actual = row["input_tokens"] + row["output_tokens"]
    row["est_input_ratio"] = round(row["est_input_tokens"] / row["input_tokens"], 3) if row["input_tokens"] else None
    row["est_output_ratio"] = (round(row["est_output_tokens"] / row["output_tokens"], 3)
                               if row["output_tokens"] else None)
    row["est_actual_ratio"] = round(est / actual, 3) if actual else None
    row["attempts"] = {str(k): v for k, v in sorted((row["attempts"] or {}).items())}
    return row


# -------------------------------------------------------------------------------------- the night loop


@dataclass
class WaveStep:
    """What one step of the night did and what comes next: wait for batches / a time, or done."""

    done: bool
    message: str
    wait_batch_ids: list[str] = field(default_factory=list)
    wake_at: float | None = None  # Unix time
    counts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def advance(night: Night, now: float | None = None) -> WaveStep:
    """One step of the night's grading: reconcile and collect, write a due retry wave, submit, decide the wait.

    The step holds the institution's grade lock (a session-level advisory lock): a second runner of the
    same institution (a duplicate task instance, a manual `tasks test`, two deployments) finds it taken,
    submits nothing and waits for its next look, so no job is ever sent by two runners.
    """
    conn = night.conn
    _provider(night)  # no provider: fail before taking the lock
    now = time.time() if now is None else now
    params = {"inst": night.inst.id}  # the key: gradeflow_lock_key('grade:<id>'), the institution's own
    if not db.fetch_all(conn, "grade/try_night_lock", params)[0]["locked"]:
        return _busy_step(night, now, params)
    try:
        return _advance(night, now)
    finally:
        _unlock(conn, params)


def _unlock(conn: psycopg.Connection, params: dict) -> None:
    from psycopg.pq import TransactionStatus

    if conn.closed or conn.broken:
        return  # the session's end released the lock
    if conn.info.transaction_status != TransactionStatus.IDLE:  # leave a failed transaction first
        conn.rollback()
    db.fetch_all(conn, "grade/night_unlock", params)


def _busy_step(tonight: Night, now: float, params: dict) -> WaveStep:
    """Another runner holds the institution's grade lock: say who, submit nothing, look again later."""
    conn, inst, night = tonight.conn, tonight.inst, tonight.day
    deadline, recheck_seconds = tonight.deadline, tonight.recheck_seconds
    holders = db.fetch_all(conn, "grade/night_lock_holders", params)
    who = "; ".join(f"backend pid {h['pid']} ({h['application_name'] or 'no application name'}, {h['state']} "
                    f"since {h['state_change']})" for h in holders) or "a backend that has just let go"
    counts = {"night": str(night), "busy": True}
    if deadline is not None and now >= deadline:
        return WaveStep(True, f"Deadline {_utc(deadline)} reached for {inst.id} night {night} while another grade "
                        f"runner holds its lock ({who}); that runner reports the night. This one submitted nothing.",
                        counts=counts)
    wake = now + recheck_seconds if deadline is None else min(now + recheck_seconds, deadline)
    message = (f"another grade runner of {inst.id} holds its lock ({who}): this runner submits nothing and "
               f"looks again at {_utc(wake)} (one runner per institution: nothing is sent twice).")
    log.warning("%s", message)
    return WaveStep(False, message, [], wake, counts)


def _advance(tonight: Night, now: float) -> WaveStep:
    from gradeflow.grading import prepare

    conn, inst, provider, night = tonight.conn, tonight.inst, _provider(tonight), tonight.day
    deadline, recheck_seconds = tonight.deadline, tonight.recheck_seconds
    past_deadline = deadline is not None and now >= deadline
    rec = reconcile(tonight)
    state = db.fetch_all(conn, "grade/night_state", {"inst": inst.id, "night": night})[0]
    next_wave_at = None
    wave_plan = None
    if state["pending"] and not past_deadline:
        refused = db.fetch_all(conn, "grade/night_refusals", {"inst": inst.id, "night": night})[0]
        # each wave waits twice as long as the one before: per attempt, and per whole-job refusal (a refusal
        # gives the attempt back, so without it the waits would never grow); capped
        doublings = max(int(state["max_attempt"] or 1) - 1, int(refused["refusals"] or 0), 0)
        backoff = min(inst.retry_backoff_seconds * 2 ** min(doublings, 32), RETRY_BACKOFF_CAP_SECONDS)
        last = state["last_requeue_at"].timestamp() if state["last_requeue_at"] else now
        next_wave_at = last + backoff
        if now >= next_wave_at:
            wave_inst = inst
            if refused["refusals"]:  # refused whole: cut the next jobs to half the smallest refused one
                wave_inst = replace(inst, max_requests_per_batch=max(1, min(inst.max_requests_per_batch,
                                                                            int(refused["smallest"])) // 2))
            wave_plan = prepare.write_jobs(replace(tonight, inst=wave_inst), wave=int(state["last_wave"] or 1) + 1)
            log.info("Retry wave %d for %s night %s (after %.0fs backoff): %d line(s) in %d job(s); %d deferred",
                     int(state["last_wave"] or 1) + 1, inst.id, night, backoff, wave_plan.requests_queued,
                     wave_plan.jobs_written, wave_plan.requests_deferred)
            next_wave_at = None
    submitted = waiting = 0
    if not past_deadline:
        submitted, waiting = submit_ready(tonight)
    live = [j for j in db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id}) if j["provider_batch_id"]]
    state = db.fetch_all(conn, "grade/night_state", {"inst": inst.id, "night": night})[0]
    counts = {"night": str(night), "collected_jobs": rec.collected, "reattached": rec.reattached,
              "submitted": submitted, "jobs_waiting_for_cap": waiting, "live_batches": len(live),
              "lines_pending_retry": state["pending"], "waves": int(state["last_wave"] or 0)}
    live_ids = [j["provider_batch_id"] for j in live]
    if past_deadline:
        unfinished = len(live_ids) + waiting + (1 if state["pending"] else 0)
        message = (f"Deadline {_utc(deadline)} reached for {inst.id} night {night}: "
                   f"{len(live_ids)} batch(es) still running ({', '.join(live_ids) or 'none'}), "
                   f"{state['queued']} request(s) with the model and {state['pending']} waiting for a retry wave. "
                   "The 06:00 release shows them as pending (pending_model); nothing is cancelled: the next grade "
                   "run reattaches and collects every batch still open, and the day gets a new release version.")
        if unfinished:
            alerts.error("GRADEFLOW ALERT grade deadline %s", message)
        return WaveStep(True, message, counts=counts)
    local = bool(live_ids) and provider.runs_locally
    wakes = [t for t in (next_wave_at, now + recheck_seconds if waiting else None, deadline,
                         time.time() + provider.step_pause_seconds if local else None) if t is not None]
    if local:  # the provider does the work in the steps: come back soon, nothing to poll meanwhile
        return WaveStep(False, f"{len(live_ids)} local batch(es) of {inst.id} on {provider.name} moved on by one "
                        f"chunk each ({', '.join(live_ids[:5])}{' ...' if len(live_ids) > 5 else ''}); the next "
                        "step sends the next chunk.", [], min(wakes), counts)
    if live_ids:
        parts = [f"Waiting, deferred (no worker held), for {len(live_ids)} batch(es) of {inst.id}: "
                 f"{', '.join(live_ids[:5])}{' ...' if len(live_ids) > 5 else ''}. When one finishes, its results "
                 "are collected"]
        if waiting:
            parts.append(f"and the next of {waiting} job(s) waiting for room under the enqueued-token cap is "
                         "submitted")
        if next_wave_at:
            parts.append(f"; {state['pending']} line(s) go out again in the next wave, not before "
                         f"{_utc(next_wave_at)}")
        return WaveStep(False, " ".join(parts) + ".", live_ids, min(wakes) if wakes else None, counts)
    if waiting:
        return WaveStep(False, f"{waiting} job(s) of {inst.id} wait for room under the organisation's enqueued-token "
                        f"cap (other institutions' batches hold it); checking again at {_utc(min(wakes))}.",
                        [], min(wakes), counts)
    if next_wave_at:
        return WaveStep(False, f"{state['pending']} line(s) of {inst.id} failed for a passing reason and go out again "
                        f"in the next wave at {_utc(next_wave_at)} (exponential backoff).", [], min(wakes), counts)
    ledger = db.fetch_all(conn, "grade/night_ledger", {"inst": inst.id, "night": night})[0]
    counts.update({k: (float(v) if v is not None and k == "cost_usd" else v) for k, v in ledger.items()})
    cost = float(ledger["cost_usd"] or 0)
    message = (f"Night {night} of {inst.id} done: {counts['waves']} wave(s); tokens estimated in "
               f"{ledger['est_input_tokens'] or 0} out {ledger['est_output_tokens'] or 0}, actual in "
               f"{ledger['input_tokens'] or 0} out {ledger['output_tokens'] or 0}; ${cost:.4f}")
    log.info(message)
    return WaveStep(True, message, counts=counts)
