"""Prepare (18:00 local): order the day FIFO, grade objective answers by rule, write Batch API jobs.

Every step is idempotent: it only touches answers with no current grade and no open review, and
a batch job's identity is the fingerprint of the exact work in it, so a rerun or a cleared task
finds the job it already wrote instead of writing (and later paying for) a second one.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from gradeflow import lifecycle
from gradeflow.core import db, storage
from gradeflow.core.config import FREE_TEXT_TYPES, RULE_TYPES, Institution, load_openai_settings
from gradeflow.grading import batch
from gradeflow.grading.context import Night

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

ANALYSE_AFTER_ROWS = 10_000  # grading this many answers refreshes the statistics of grades


def order_submissions(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """Give the day's new submissions their FIFO sequence numbers; return how many were numbered."""
    with conn.transaction():
        db.execute(conn, "bulk_plans")
        numbered = db.execute(conn, "prepare/order_submissions", {"inst": inst.id, "day": day})
    log.info("Ordered %d new submission(s) of %s %s first-in-first-out", numbered, inst.id, day)
    return numbered


def grade_by_rule(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """Grade every ungraded objective answer of the day (and empty free-text answers, which score 0).

    One set-based statement in the database (the rules as SQL functions of migration 007; their reference
    semantics in tests/rules_reference.py): no answer travels to Python and back.
    """
    version = lifecycle.grading_version(conn, inst, day)
    with conn.transaction():
        db.execute(conn, "bulk_plans")
        graded = db.execute(conn, "prepare/grade_by_rule", {
            "inst": inst.id, "day": day, "version": version, "rule_types": sorted(RULE_TYPES),
            "free_text_types": sorted(FREE_TEXT_TYPES)})
    if graded >= ANALYSE_AFTER_ROWS:
        db.execute(conn, "prepare/analyse_grades")
    log.info("Graded %d answer(s) of %s %s by rule", graded, inst.id, day)
    return graded


@dataclass
class BatchPlan:
    """What build_batches (or one wave of write_jobs) did, in counts."""

    answers: int = 0
    distinct_requests: int = 0
    new_requests: int = 0
    late_days: list[str] = field(default_factory=list)
    carried_over: int = 0
    jobs_written: int = 0
    requests_queued: int = 0
    requests_deferred: int = 0
    est_input_tokens: int = 0
    est_output_tokens: int = 0
    est_tokens_queued: int = 0
    expected_output_per_request: int = 0
    budget_remaining: int = 0
    bytes_written: int = 0


def catch_up_late_days(conn: psycopg.Connection, inst: Institution, night: date) -> list[date]:
    """Submissions of earlier days that arrived after their cut-off: number them FIFO and grade them by rule.

    Their free-text answers become model work tonight (build_batches), and those days get a new
    release version once graded (publish republishes every day whose state changed).
    """
    late = db.fetch_all(conn, "prepare/late_days", {"inst": inst.id, "day": night})
    for row in late:
        log.warning("Late answers: %d submission(s) of %s %s arrived after that day's cut-off; they are graded "
                    "in the night of %s and %s gets a new release version", row["submissions"], inst.id,
                    row["exam_day"], night, row["exam_day"])
        order_submissions(conn, inst, row["exam_day"])
        grade_by_rule(conn, inst, row["exam_day"])
    return [row["exam_day"] for row in late]


def build_batches(night: Night) -> BatchPlan:
    """The night's model work: new requests from the day's (and late days') free-text answers, then jobs.

    Identical answers to a question are merged into one request (set-based: one query, one bulk insert).
    Tonight's jobs take, in order, every waiting request of the institution: carried-over (deferred)
    work of earlier days first, then tonight's, first-in-first-out; admission stops at the first request
    over the night's token budget and the rest is deferred (`deferred_budget`) to the next night.
    """
    conn, inst, day = night.conn, night.inst, night.day
    order_submissions(conn, inst, day)  # answers that arrived after the cut-off get their place in line too
    late = catch_up_late_days(conn, inst, day)
    days = sorted({day, *late})
    versions = {d: lifecycle.grading_version(conn, inst, d) for d in days}
    writer = batch.RequestWriter(inst.model)
    plan = BatchPlan(late_days=[str(d) for d in late])
    lines = _create_requests(night, days, versions, writer, plan)
    with conn.transaction():
        for d in days:  # answers identical to work already graded or in review join it
            lifecycle.route_doubtful(conn, inst, d, versions[d])
            lifecycle.apply_model_grades(conn, inst, d, versions[d])
            lifecycle.apply_review_grades(conn, inst, d, versions[d])
            lifecycle.fan_out_reviews(conn, inst, d, versions[d])
    wave = write_jobs(night, wave=1, writer=writer, lines=lines)
    for name in ("carried_over", "jobs_written", "requests_queued", "requests_deferred", "est_input_tokens",
                 "est_output_tokens", "est_tokens_queued", "expected_output_per_request", "budget_remaining",
                 "bytes_written"):
        setattr(plan, name, getattr(wave, name))
    log.info("Batches for %s night %s: %d free-text answers -> %d distinct requests (%d new)%s; %d job(s) written "
             "with %d requests (%d carried over from earlier nights; ~%d input + %d output tokens, %d bytes); "
             "%d deferred to the next night (over budget); budget left ~%d tokens", inst.id, day, plan.answers,
             plan.distinct_requests, plan.new_requests,
             f" incl. late answers of {', '.join(plan.late_days)}" if plan.late_days else "", plan.jobs_written,
             plan.requests_queued, plan.carried_over, plan.est_input_tokens, plan.est_output_tokens,
             plan.bytes_written, plan.requests_deferred, plan.budget_remaining)
    return plan


def _questions(conn: psycopg.Connection, inst: Institution, exam_ids) -> dict[tuple[str, str], dict]:
    rows = db.fetch_all(conn, "prepare/free_text_questions", {"inst": inst.id, "exam_ids": sorted(set(exam_ids)),
                                                                "qtypes": sorted(FREE_TEXT_TYPES)})
    return {(q["exam_id"], q["question_id"]): q for q in rows}


def _create_requests(night: Night, days: list[date], versions: dict, writer: batch.RequestWriter,
                     plan: BatchPlan) -> dict[str, batch.Line]:
    """Insert the new merged requests in bulk; return their lines (custom_id -> batch.Line: exact input tokens,
    size in bytes as written, rendered only when its job's file is written)."""
    conn, inst = night.conn, night.inst
    groups = db.fetch_all(conn, "prepare/new_request_groups", {"inst": inst.id, "days": days,
                                                                 "qtypes": sorted(FREE_TEXT_TYPES)})
    questions = _questions(conn, inst, (g["exam_id"] for g in groups))
    lines: dict[str, batch.Line] = {}
    staged = []
    for g in groups:
        day = g["exam_day"]
        cid = batch.custom_id(inst.id, str(day), g["exam_id"], g["question_id"], g["answer_sha256"], versions[day])
        line = lines[cid] = writer.request(cid, questions[(g["exam_id"], g["question_id"])], g["answer_text"])
        staged.append((cid, day, g["exam_id"], g["question_id"], g["answer_sha256"], versions[day],
                       g["first_fifo_seq"], g["answer_count"], line.tokens))
    plan.answers = sum(g["answer_count"] for g in groups)
    plan.distinct_requests = len(groups)
    with conn.transaction():
        db.execute(conn, "prepare/create_stage")
        with conn.cursor() as cur, cur.copy("COPY new_llm_requests FROM STDIN") as copy:
            for row in staged:
                copy.write_row(row)
        plan.new_requests = lifecycle.create_requests(conn, inst)
    if plan.new_requests > 1000:  # plans over a table that just grew must not use stale statistics
        db.execute(conn, "prepare/analyse_requests")
    return lines


MIN_QUESTION_LINES = 5  # graded lines of a question before its own mean output is used
MIN_INSTITUTION_LINES = 50  # graded lines of the institution before its ratio corrects the cold start
RATIO_BOUNDS = (0.2, 5.0)  # the institution's actual/cold ratio is kept within these


def cold_output_estimate(inst: Institution, question: dict) -> int:
    """Output tokens expected per request of a question nobody has usage for: the institution's configured
    `expected_output_tokens` if set, else the estimate from the question's schema and rubric items."""
    if inst.expected_output_tokens:
        return min(batch.output_cap(question), int(inst.expected_output_tokens))
    return batch.cold_output_tokens(question, inst.model)


def output_estimates(conn: psycopg.Connection, inst: Institution, night: date, requests: list[dict],
                     questions: dict[tuple[str, str], dict]) -> dict[str, int]:
    """Expected output tokens of each request (custom_id -> tokens), learned per question.

    A question with MIN_QUESTION_LINES graded lines in the last 14 nights (tonight's earlier waves included) uses
    their mean; another uses its cold-start estimate (`cold_output_estimate`) times the institution's ratio of
    actual to cold-start output over the questions it has usage for (once it has MIN_INSTITUTION_LINES lines), so a
    model that writes more or less than the schema suggests is learned for new questions too. Never above the
    request's output cap (max_completion_tokens: what a reply can cost at most).
    """
    history = {(h["exam_id"], h["question_id"]): h for h in db.fetch_all(
        conn, "prepare/learned_output", {"inst": inst.id, "night": night})}
    known = _questions(conn, inst, {k[0] for k in history}) if history else {}
    actual = sum(int(h["output_tokens"]) for k, h in history.items() if k in known)
    expected = sum(int(h["lines"]) * cold_output_estimate(inst, known[k]) for k, h in history.items() if k in known)
    lines = sum(int(h["lines"]) for k, h in history.items() if k in known)
    ratio = min(max(actual / expected, RATIO_BOUNDS[0]), RATIO_BOUNDS[1]) \
        if lines >= MIN_INSTITUTION_LINES and expected else 1.0
    per_question: dict[tuple[str, str], int] = {}
    out = {}
    for req in requests:
        key = (req["exam_id"], req["question_id"])
        if key not in per_question:
            question, seen = questions[key], history.get(key)
            if seen and int(seen["lines"]) >= MIN_QUESTION_LINES:
                tokens = math.ceil(int(seen["output_tokens"]) / int(seen["lines"]))
            else:
                tokens = math.ceil(cold_output_estimate(inst, question) * ratio)
            per_question[key] = max(1, min(batch.output_cap(question), tokens))
        out[req["custom_id"]] = per_question[key]
    return out


def write_jobs(tonight: Night, wave: int = 1, writer: batch.RequestWriter | None = None,
               lines: dict[str, batch.Line] | None = None) -> BatchPlan:
    """Admit waiting requests into the night's jobs (strict FIFO within the budget) and write their files.

    Wave 1 (prepare) first takes back every deferred request of earlier nights. Admission walks the
    waiting requests by exam day, then FIFO, and stops at the first one that does not fit in what the
    budget has left (actual spend of collected lines, estimates of the rest): nothing jumps the queue.
    The rest is deferred to the next night. Admitted requests are cut into jobs of one exam day each,
    within the request count, the bytes written, and the institution's share of the API's enqueued-token
    cap, and written to S3 with their ledger rows.
    """
    conn, inst, night = tonight.conn, tonight.inst, tonight.day
    plan = BatchPlan()
    writer = writer or batch.RequestWriter(inst.model)
    lines = dict(lines or {})
    if wave == 1:
        params = {"inst": inst.id, "day": night}
        deferred = [r["custom_id"] for r in db.fetch_all(conn, "prepare/open_deferred", params)]
        with conn.transaction():
            plan.carried_over = lifecycle.undefer(conn, inst, deferred)
    pending = db.fetch_all(conn, "prepare/pending_requests", {"inst": inst.id, "day": night})
    if not pending:
        return plan
    _fill_lines(conn, inst, pending, writer, lines)
    expected = output_estimates(conn, inst, night, pending, _questions(conn, inst, {r["exam_id"] for r in pending}))
    plan.expected_output_per_request = round(sum(expected.values()) / len(expected))
    committed = db.fetch_all(conn, "prepare/night_committed", {"inst": inst.id, "night": night})[0]["tokens"]
    remaining = inst.daily_token_budget - committed
    admitted = []
    for req in pending:  # strict FIFO: stop at the first request that does not fit
        cost = lines[req["custom_id"]].tokens + expected[req["custom_id"]]
        if cost > remaining:
            break
        remaining -= cost
        admitted.append(req)
    over = pending[len(admitted):]
    plan.budget_remaining = remaining
    if over:
        with conn.transaction():
            plan.requests_deferred = lifecycle.defer(conn, inst, [r["custom_id"] for r in over], "deferred_budget")
        log.warning("Budget of %s night %s: %d request(s) admitted first-in-first-out, %d deferred to the next "
                    "night from exam day %s on (first one needs ~%d tokens, %d left)", inst.id, night,
                    len(admitted), len(over), over[0]["exam_day"],
                    lines[over[0]["custom_id"]].tokens + expected[over[0]["custom_id"]],
                    remaining)
    for shard in _shards(inst, admitted, lines, (tonight.settings or load_openai_settings()).institution_cap()):
        _write_job(tonight, wave, shard, lines, expected, plan)
    return plan


def _fill_lines(conn: psycopg.Connection, inst: Institution, pending: list[dict], writer: batch.RequestWriter,
                lines: dict[str, batch.Line]) -> None:
    """Build the lines of waiting requests not built in this run (carried over, or retried), in one query."""
    missing = [r for r in pending if r["custom_id"] not in lines]
    if not missing:
        return
    texts = {r["custom_id"]: r["answer_text"] for r in db.fetch_all(
        conn, "prepare/request_texts", {"inst": inst.id, "custom_ids": [r["custom_id"] for r in missing]})}
    questions = _questions(conn, inst, (r["exam_id"] for r in missing))
    for r in missing:
        lines[r["custom_id"]] = writer.request(r["custom_id"], questions[(r["exam_id"], r["question_id"])],
                                               texts[r["custom_id"]] or "")


def _shards(inst: Institution, admitted: list[dict], lines: dict[str, batch.Line], token_cap: int):
    """Cut admitted requests (in order) into jobs: one exam day each, within count, bytes and token share."""
    shard: list[dict] = []
    size = tokens = 0
    for req in admitted:
        line = lines[req["custom_id"]]
        req_bytes, req_tokens = line.size, line.tokens
        full = shard and (req["exam_day"] != shard[0]["exam_day"] or len(shard) >= inst.max_requests_per_batch
                          or size + req_bytes > inst.max_batch_bytes or tokens + req_tokens > token_cap)
        if full:
            yield shard
            shard, size, tokens = [], 0, 0
        shard.append(req)
        size += req_bytes
        tokens += req_tokens
    if shard:
        yield shard


def _write_job(tonight: Night, wave: int, shard: list[dict], lines: dict[str, batch.Line],
               expected: dict[str, int], plan: BatchPlan) -> int:
    """Write one JSONL input file, its batch_jobs row and its ledger rows; the fingerprint makes a rerun find it.

    The file is rendered line by line into a spooled upload (storage.write_chunks), never held whole; its size is
    the sum of its lines' sizes, checked against the bytes written."""
    conn, s3, inst, night = tonight.conn, tonight.s3, tonight.inst, tonight.day
    ids = [r["custom_id"] for r in shard]
    work = [f"{r['custom_id']}@{r['sends'] + 1}" for r in shard]  # a retry is new work: a new fingerprint
    fingerprint = hashlib.sha256("\n".join([inst.id, inst.model, *work]).encode()).hexdigest()
    size = sum(lines[cid].size for cid in ids)
    if size > inst.max_batch_bytes and len(ids) > 1:
        raise RuntimeError(f"job of {len(ids)} requests is {size} bytes, over {inst.max_batch_bytes}")
    key = inst.key("batches", shard[0]["exam_day"], f"{fingerprint[:20]}.jsonl")
    written = storage.write_chunks(s3, key, (lines[cid].render() for cid in ids), "application/jsonl")
    if written != size:  # the size admission and the limits used is the size of the file
        raise RuntimeError(f"job file {key}: {written} bytes written, {size} expected")
    est_in = sum(lines[cid].tokens for cid in ids)
    est_out = sum(expected[cid] for cid in ids)
    with conn.transaction():
        row = lifecycle.create_job(
            conn, inst, day=shard[0]["exam_day"], night=night, wave=wave, fingerprint=fingerprint,
            attempt=max(r["attempt"] for r in shard) + 1, model=inst.model, input_key=key,
            request_count=len(ids), est_input_tokens=est_in, est_output_tokens=est_out,
            input_bytes=size)
        db.execute(conn, "prepare/create_lines_stage")
        with conn.cursor() as cur, cur.copy("COPY staged_lines FROM STDIN") as copy:
            for cid in ids:
                copy.write_row((cid, lines[cid].tokens, expected[cid]))
        lifecycle.queue(conn, inst, row["job_id"])  # the staged requests, with their expected output tokens
        db.execute(conn, "prepare/insert_lines", {"inst": inst.id, "job_id": row["job_id"]})
    plan.jobs_written += 1
    plan.requests_queued += len(ids)
    plan.est_input_tokens += est_in
    plan.est_output_tokens += est_out
    plan.est_tokens_queued += est_in + est_out
    plan.bytes_written += size
    log.info("Job %s (%s, wave %d): %d requests of exam day %s, %d bytes, ~%d input tokens", row["job_id"],
             "written" if row["inserted"] else "already written", wave, len(ids), shard[0]["exam_day"], size,
             est_in)
    return row["job_id"]
