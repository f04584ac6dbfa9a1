"""Prepare (18:00 local): order the day FIFO, grade objective answers by rule, write Batch API jobs.

Every step is idempotent: it only touches answers with no current grade and no open review, and
a batch job's identity is the fingerprint of the exact work in it, so a rerun or a cleared task
finds the job it already wrote instead of writing (and later paying for) a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from gradeflow import batch, db, lifecycle, rules, storage
from gradeflow.config import FREE_TEXT_TYPES, RULE_TYPES, Institution

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)


def grading_version(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """The day's grading version: 1, raised by each admin rerun."""
    return db.fetch_all(conn, "prepare/current_version", {"inst": inst.id, "day": day})[0]["version"]


def order_submissions(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """Give the day's new submissions their FIFO sequence numbers; return how many were numbered."""
    with conn.transaction():
        numbered = db.execute(conn, "prepare/order_submissions", {"inst": inst.id, "day": day})
    log.info("Ordered %d new submission(s) of %s %s first-in-first-out", numbered, inst.id, day)
    return numbered


def _ungraded(conn: psycopg.Connection, inst: Institution, day: date, qtypes: frozenset[str]) -> list[dict]:
    return db.fetch_all(conn, "prepare/ungraded_answers", {"inst": inst.id, "day": day, "qtypes": sorted(qtypes)})


def _grade_row(inst: Institution, day: date, version: int, answer: dict, score: float, rationale: str) -> dict:
    return {"inst": inst.id, "day": day, "submission_id": answer["submission_id"],
            "question_id": answer["question_id"], "score": score, "max_points": answer["max_points"],
            "grader": "rule", "model": None, "job_id": None, "custom_id": None, "attempt": 1,
            "version": version, "rationale": rationale, "confidence": 1}


def grade_by_rule(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """Grade every ungraded objective answer of the day (and empty free-text answers, which score 0)."""
    version = grading_version(conn, inst, day)
    rows = [_grade_row(inst, day, version, a, rules.grade(a, a["answer_text"]), "graded by rule")
            for a in _ungraded(conn, inst, day, RULE_TYPES)]
    rows += [_grade_row(inst, day, version, a, 0.0, "no answer given")
             for a in _ungraded(conn, inst, day, FREE_TEXT_TYPES) if not a["answer_text"].strip()]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(db.sql("prepare/insert_grade"), rows)
    log.info("Graded %d answer(s) of %s %s by rule", len(rows), inst.id, day)
    return len(rows)


@dataclass
class BatchPlan:
    """What build_batches did, in counts."""

    answers: int = 0
    distinct_requests: int = 0
    new_requests: int = 0
    jobs_written: int = 0
    requests_queued: int = 0
    requests_deferred: int = 0
    est_tokens_queued: int = 0


def _group_answers(inst: Institution, day: date, answers: list[dict], version: int) -> OrderedDict[str, dict]:
    """Merge identical answers to the same question into one request, in FIFO order of first arrival."""
    groups: OrderedDict[str, dict] = OrderedDict()
    for a in answers:
        cid = batch.custom_id(inst.id, str(day), a["exam_id"], a["question_id"], a["answer_sha256"], version)
        group = groups.setdefault(cid, {"answer": a, "count": 0})
        group["count"] += 1
    return groups


def _insert_requests(conn: psycopg.Connection, inst: Institution, day: date, groups: dict,
                     version: int) -> tuple[int, dict]:
    lines, new = {}, 0
    with conn.cursor() as cur:
        for cid, group in groups.items():
            a = group["answer"]
            request = batch.build_request(cid, inst.model, a, a["answer_text"])
            lines[cid] = request
            cur.execute(db.sql("prepare/insert_llm_request"), {
                "custom_id": cid, "inst": inst.id, "day": day, "exam_id": a["exam_id"],
                "question_id": a["question_id"], "answer_sha256": a["answer_sha256"], "version": version,
                "first_fifo_seq": a["fifo_seq"], "answer_count": group["count"],
                "est_tokens": batch.estimate_tokens(request)})
            new += cur.rowcount
    return new, lines


def build_batches(conn: psycopg.Connection, s3, inst: Institution, day: date) -> BatchPlan:
    """Group the day's free-text answers into model requests and write Batch API input files to S3.

    Requests over the institution's daily token budget are not sent: they are deferred
    (reason `deferred_budget`) to the next night, never sent to human review for that.
    """
    plan = BatchPlan()
    order_submissions(conn, inst, day)  # answers that arrived after the cut-off get their place in line too
    answers = [a for a in _ungraded(conn, inst, day, FREE_TEXT_TYPES) if a["answer_text"].strip()]
    version = grading_version(conn, inst, day)
    groups = _group_answers(inst, day, answers, version)
    plan.answers, plan.distinct_requests = len(answers), len(groups)
    with conn.transaction():
        plan.new_requests, lines = _insert_requests(conn, inst, day, groups, version)
        lifecycle.route_doubtful(conn, inst, day, version)
        lifecycle.apply_model_grades(conn, inst, day, version)
        lifecycle.apply_review_grades(conn, inst, day, version)
        lifecycle.fan_out_reviews(conn, inst, day, version)
    params = {"inst": inst.id, "day": day, "version": version}
    pending = [r for r in db.fetch_all(conn, "prepare/pending_requests", params) if r["custom_id"] in lines]
    within, over = _apply_budget(conn, inst, day, pending)
    if over:
        with conn.transaction():
            plan.requests_deferred = lifecycle.defer(conn, inst, [r["custom_id"] for r in over], "deferred_budget")
    for start in range(0, len(within), inst.max_requests_per_batch):
        chunk = within[start:start + inst.max_requests_per_batch]
        _write_job(conn, s3, inst, day, chunk, lines)
        plan.jobs_written += 1
        plan.requests_queued += len(chunk)
        plan.est_tokens_queued += sum(r["est_tokens"] for r in chunk)
    log.info("Batches for %s %s: %d free-text answers -> %d distinct requests (%d new); %d job(s) written "
             "with %d requests (~%d tokens); %d deferred (over budget)", inst.id, day, plan.answers,
             plan.distinct_requests, plan.new_requests, plan.jobs_written, plan.requests_queued, plan.est_tokens_queued,
             plan.requests_deferred)
    return plan


def _apply_budget(conn: psycopg.Connection, inst: Institution, day: date, pending: list[dict]):
    spent = db.fetch_all(conn, "prepare/tokens_committed", {"inst": inst.id, "day": day})[0]["tokens"]
    within, over = [], []
    for req in pending:
        if spent + req["est_tokens"] <= inst.daily_token_budget:
            spent += req["est_tokens"]
            within.append(req)
        else:
            over.append(req)
    return within, over


def _write_job(conn: psycopg.Connection, s3, inst: Institution, day: date, chunk: list[dict],
               lines: dict[str, dict]) -> int:
    """Write one JSONL input file and its batch_jobs row; the fingerprint makes a rerun find it again."""
    ids = [r["custom_id"] for r in chunk]
    attempt = max(r["attempt"] for r in chunk) + 1  # a retry wave is new work: a new fingerprint
    work = [f"{r['custom_id']}@{r['attempt'] + 1}" for r in chunk]
    fingerprint = hashlib.sha256("\n".join([inst.id, str(day), inst.model, *work]).encode()).hexdigest()
    key = inst.key("batches", day, f"{fingerprint[:20]}.jsonl")
    body = "".join(json.dumps(lines[cid], ensure_ascii=False) + "\n" for cid in ids)
    storage.write_bytes(s3, key, body.encode(), "application/jsonl")
    with conn.transaction():
        job_id = db.fetch_all(conn, "prepare/insert_batch_job", {
            "inst": inst.id, "day": day, "fingerprint": fingerprint, "attempt": attempt, "model": inst.model,
            "input_key": key, "request_count": len(ids),
            "est_input_tokens": sum(r["est_tokens"] for r in chunk)})[0]["job_id"]
        lifecycle.queue(conn, inst, job_id, ids)
    return job_id
