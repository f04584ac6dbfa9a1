"""The Batch API at production limits (issue 6), on the real stack through the emulator: FIFO budgets,
carry-over, waves with backoff, sharding, the shared enqueued-token cap, reconciling and salvaging
batches, the deadline, and late answers."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import date, timedelta

from gradeflow.airflow import tasks
from gradeflow.core import db
from gradeflow.core.config import OpenAISettings, get_institution
from gradeflow.grading import batch, prepare
from gradeflow.grading import night as grading
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from gradeflow.release import publish

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put, run_night

D1 = date.fromisoformat(DAY)
D2 = D1 + timedelta(days=1)
NORTH = replace(get_institution("northfield"), retry_backoff_seconds=0.05, min_confidence=0.0)  # routing: issue 7
BIG = OpenAISettings(enqueued_token_cap=10_000_000, max_share_per_institution=0.3)


def _load(conn, s3, inst, rows, day=DAY, name="a.csv"):
    put(s3, f"incoming/{inst.s3_prefix}/{day}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{inst.s3_prefix}/{day}/submissions/{name}", csv_bytes(rows))
    ingest_institution(inst, conn, s3)


def _rows(n, day=DAY, prefix="s", text="answer number {i} about ATP and energy"):
    rows = []
    for i in range(n):
        for row in answers_for(f"{prefix}{i}", f"st-{prefix}{i}", text.format(i=i), minute=i % 60):
            row["submitted_at"] = row["submitted_at"].replace(DAY, day)
            rows.append(row)
    return rows


def _prepare(conn, s3, inst, day=D1, settings=BIG):
    prepare.order_submissions(conn, inst, day)
    prepare.grade_by_rule(conn, inst, day)
    return prepare.build_batches(Night(inst, day, conn, s3, settings=settings))


def _request_cost(conn, inst, text, day=DAY):
    """Exact input tokens + expected output of one q4 request with this answer (what admission charges)."""
    return batch.RequestWriter(inst.model).line("gf1-x", _q4(conn, inst), text)[1] + _cold_output(conn, inst)


def _q4(conn, inst) -> dict:
    fields = ("qtype", "max_points", "prompt", "rubric", "reference_answer", "rubric_items")
    row = conn.execute(f"SELECT {', '.join(fields)} FROM questions WHERE institution_id = %s AND question_id = 'q4'",
                       (inst.id,)).fetchone()
    return dict(zip(fields, row, strict=True))


def _cold_output(conn, inst) -> int:
    """The output tokens admission expects of a q4 request before any usage (from the question's schema)."""
    return prepare.cold_output_estimate(inst, _q4(conn, inst))


def _statuses(conn, inst=NORTH):
    return dict(conn.execute("SELECT status, count(*) FROM llm_requests WHERE institution_id = %s GROUP BY 1",
                             (inst.id,)).fetchall())


def _release(conn, inst, day):
    gate = publish.validate(conn, inst, day)
    assert gate.success, gate.failures
    return publish.release(conn, inst, day, gate.validation_id)


def test_admission_is_strict_fifo_and_stops_at_the_first_request_that_does_not_fit(conn, s3, emulator):
    long = "ATP " * 1000
    rows = (answers_for("s1", "st1", "it makes ATP", minute=1) + answers_for("s2", "st2", long, minute=2)
            + answers_for("s3", "st3", "energy", minute=3))
    _load(conn, s3, NORTH, rows)
    first, second, third = (_request_cost(conn, NORTH, t) for t in ("it makes ATP", long, "energy"))
    assert second > first + third  # the long one alone would not fit; the short third one would
    inst = replace(NORTH, daily_token_budget=first + third + 5)
    plan = _prepare(conn, s3, inst)
    assert (plan.requests_queued, plan.requests_deferred) == (1, 2)
    queued = conn.execute("SELECT a.submission_id, r.status, r.deferred_reason FROM llm_requests r JOIN answers a "
                          "ON a.institution_id = r.institution_id AND a.question_id = r.question_id "
                          "AND a.answer_sha256 = r.answer_sha256 ORDER BY 1").fetchall()
    # s3 would fit in what is left, but it came after s2: nothing jumps the queue.
    assert queued == [("s1", "queued", None), ("s2", "deferred", "deferred_budget"),
                      ("s3", "deferred", "deferred_budget")]
    assert conn.execute("SELECT count(*) FROM review_queue").fetchone()[0] == 0
    # The ledger holds the exact estimate of the admitted line.
    est = conn.execute("SELECT est_input_tokens + est_output_tokens FROM batch_lines").fetchall()
    assert est == [(first,)]


def test_deferred_work_goes_first_the_next_nights_and_its_day_is_released_again(conn, s3, emulator, openai_client):
    _load(conn, s3, NORTH, _rows(3))
    cost = _request_cost(conn, NORTH, "answer number 0 about ATP and energy")
    inst = replace(NORTH, daily_token_budget=2 * cost + cost // 2)  # two requests a night
    plan = _prepare(conn, s3, inst, D1)
    assert (plan.requests_queued, plan.requests_deferred) == (2, 1)
    run_night(conn, s3, openai_client, inst, D1)
    first = _release(conn, inst, D1)
    pending = conn.execute("SELECT pending_reason, count(*) FROM release_results WHERE release_id = %s "
                           "AND status = 'pending' GROUP BY 1", (first["release_id"],)).fetchall()
    assert pending == [("deferred_budget", 1)]  # the release says what waits

    # Night 2 has its own two answers: day 1's deferred one goes first, then day 2's first; one of day 2 waits.
    _load(conn, s3, inst, _rows(2, day=str(D2), prefix="t"), day=str(D2), name="b.csv")
    plan = _prepare(conn, s3, inst, D2)
    assert (plan.carried_over, plan.requests_queued, plan.requests_deferred) == (1, 2, 1)
    night2 = conn.execute("SELECT exam_day, request_count FROM batch_jobs WHERE night = %s ORDER BY job_id",
                          (D2,)).fetchall()
    assert night2 == [(D1, 1), (D2, 1)]
    run_night(conn, s3, openai_client, inst, D2)
    assert conn.execute("SELECT nights_deferred FROM llm_requests WHERE exam_day = %s AND status = 'graded' "
                        "ORDER BY nights_deferred DESC LIMIT 1", (D1,)).fetchone()[0] == 1
    waiting = conn.execute("SELECT exam_day, status FROM llm_requests WHERE status <> 'graded'").fetchall()
    assert waiting == [(D2, "deferred")]

    # Publish on the morning after night 2 (its day is D2) also republishes day 1, which changed since its release.
    out = tasks.republish_changed_days(NORTH.id, params={"exam_day": str(D2)})
    assert out["released"] == [f"{D1} v2"]
    second = publish.day_counts(conn, inst, D1)
    assert second["deferred"] == 0 and second["released_version"] == 2


def test_three_attempts_with_exponential_backoff_then_review(conn, s3, emulator, openai_client):
    emulator.faults(error_line_every=1)  # every line fails with a server error, every time
    inst = replace(NORTH, retry_backoff_seconds=0.2)  # far above the emulator's ~30 ms per batch
    _load(conn, s3, inst, _rows(2))
    _prepare(conn, s3, inst)
    steps = run_night(conn, s3, openai_client, inst, D1)
    jobs = conn.execute("SELECT wave, request_count, created_at, collected_at FROM batch_jobs "
                        "ORDER BY job_id").fetchall()
    assert [(w, n) for w, n, _, _ in jobs] == [(1, 2), (2, 2), (3, 2)]
    # Wave n+1 was written no sooner than backoff * 2**(n-1) after wave n was collected.
    for (_, _, _, collected), (_, _, created, _), wait in zip(jobs, jobs[1:], (0.2, 0.4), strict=False):
        assert (created - collected).total_seconds() >= wait
    assert any("next wave" in s.message for s in steps)
    reasons = conn.execute("SELECT reason, count(*) FROM review_queue GROUP BY 1").fetchall()
    assert reasons == [("attempts_exhausted", 2)]
    assert _statuses(conn) == {"review": 2}
    assert emulator.stats()["batches_created"] == 3
    # Every attempt is in the ledger: 3 lines per request.
    assert conn.execute("SELECT count(*), count(DISTINCT attempt) FROM batch_lines").fetchone() == (6, 3)


def test_jobs_stay_within_the_request_count(conn, s3, emulator, openai_client):
    emulator.faults(max_requests_per_file=3)  # the emulator refuses bigger files, as the real API does at 50,000
    _load(conn, s3, NORTH, _rows(10))
    plan = _prepare(conn, s3, replace(NORTH, max_requests_per_batch=3))
    sizes = [r[0] for r in conn.execute("SELECT request_count FROM batch_jobs ORDER BY job_id")]
    assert sizes == [3, 3, 3, 1] and plan.requests_queued == 10
    run_night(conn, s3, openai_client, NORTH, D1)
    assert _statuses(conn) == {"graded": 10}


def test_jobs_stay_within_the_bytes_written(conn, s3, emulator, openai_client):
    _load(conn, s3, NORTH, _rows(10))
    question = dict(zip(("qtype", "max_points", "prompt", "rubric", "reference_answer"), conn.execute(
        "SELECT qtype, max_points, prompt, rubric, reference_answer FROM questions WHERE question_id = 'q4'"
    ).fetchone(), strict=True))
    line_bytes = len(batch.RequestWriter(NORTH.model).line("gf1-" + "0" * 40, question,
                                                           "answer number 0 about ATP and energy")[0].encode())
    limit = int(line_bytes * 2.5)
    emulator.faults(max_file_bytes=limit)  # the emulator refuses bigger files, as the real API does at 200 MB
    _prepare(conn, s3, replace(NORTH, max_batch_bytes=limit))
    jobs = conn.execute("SELECT request_count, input_bytes, input_key FROM batch_jobs ORDER BY job_id").fetchall()
    assert [j[0] for j in jobs] == [2, 2, 2, 2, 2]
    for _, size, key in jobs:  # measured on the bytes written to S3
        assert size <= limit and size == s3.head_object(Bucket="gradeflow", Key=key)["ContentLength"]
    run_night(conn, s3, openai_client, NORTH, D1)
    assert _statuses(conn) == {"graded": 10} and emulator.stats()["token_limit_failures"] == 0


def test_the_shared_cap_is_never_exceeded_with_three_institutions_at_once(conn, tenant_conn, s3, emulator,
                                                                         openai_client):
    insts = [replace(get_institution(i), retry_backoff_seconds=0.05, min_confidence=0.0)
             for i in ("northfield", "lakeshore", "rheinwald")]
    own = {inst.id: conn if inst.id == "northfield" else tenant_conn(inst.id) for inst in insts}
    for inst in insts:
        _load(own[inst.id], s3, inst, _rows(6))
    one = _request_cost(conn, insts[0], "answer number 0 about ATP and energy") - _cold_output(conn, insts[0])
    cap = 5 * one + one // 2
    settings = OpenAISettings(enqueued_token_cap=cap, max_share_per_institution=0.4)  # two requests per shard
    emulator.faults(enqueued_token_cap=cap, timing={"validating": 0.05, "in_progress": 0.2, "finalizing": 0.05})
    for inst in insts:
        _prepare(own[inst.id], s3, inst, settings=settings)
        assert own[inst.id].execute("SELECT max(est_input_tokens) FROM batch_jobs").fetchone()[0] \
            <= settings.institution_cap()
    errors = []

    def night(inst):
        try:
            with db.connect(institution=inst.id) as bound:
                run_night(bound, s3, openai_client, inst, D1, settings=settings, recheck_seconds=0.1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=night, args=(inst,)) for inst in insts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    stats = emulator.stats()
    assert stats["token_limit_failures"] == 0 and 0 < stats["peak_enqueued_tokens"] <= cap
    assert stats["batches_created"] == 9  # 3 institutions x 3 shards, each once
    assert {i.id: _statuses(own[i.id], i) for i in insts} == {i.id: {"graded": 6} for i in insts}


def test_a_token_limit_refusal_is_requeued_never_reviewed_and_the_deadline_releases_pending(
        conn, s3, emulator, openai_client):
    emulator.faults(token_limit=10)  # any batch: accepted, then failed with token_limit_exceeded
    _load(conn, s3, NORTH, _rows(2))
    _prepare(conn, s3, NORTH)
    steps = run_night(conn, s3, openai_client, NORTH, D1, deadline=time.time() + 1.5)
    assert steps[-1].done and "pending_model" in steps[-1].message
    assert conn.execute("SELECT count(*) FROM review_queue").fetchone()[0] == 0
    assert set(_statuses(conn)) <= {"pending", "queued"}
    assert conn.execute("SELECT max(attempt) FROM llm_requests").fetchone()[0] <= 1  # refusals cost no attempt
    released = _release(conn, NORTH, D1)
    assert conn.execute("SELECT DISTINCT pending_reason FROM release_results WHERE release_id = %s AND "
                        "status = 'pending'", (released["release_id"],)).fetchall() == [("pending_model",)]
    emulator.faults(token_limit=None)
    run_night(conn, s3, openai_client, NORTH, D2)  # the next night picks the work up first
    assert _statuses(conn) == {"graded": 2}


def test_a_lost_batch_id_is_reattached_not_created_twice_even_after_a_clear(conn, s3, emulator, openai_client):
    _load(conn, s3, NORTH, _rows(2))
    _prepare(conn, s3, NORTH)
    grading.advance(Night(NORTH, D1, conn, s3, openai_client))  # submits
    conn.execute("UPDATE batch_jobs SET provider_batch_id = NULL, status = 'prepared'")  # the crash lost the id
    grading.advance(Night(NORTH, D1, conn, s3, openai_client))  # a cleared task runs again
    _prepare(conn, s3, NORTH)  # and prepare too
    run_night(conn, s3, openai_client, NORTH, D1)
    assert emulator.stats()["batches_created"] == 1 and _statuses(conn) == {"graded": 2}


def test_an_expired_orphan_is_salvaged_and_no_line_is_paid_twice(conn, s3, emulator, openai_client):
    emulator.faults(expire_after_fraction=0.5)
    _load(conn, s3, NORTH, _rows(4))
    _prepare(conn, s3, NORTH)
    grading.advance(Night(NORTH, D1, conn, s3, openai_client))
    batch_id = conn.execute("SELECT provider_batch_id FROM batch_jobs").fetchone()[0]
    while openai_client.batches.retrieve(batch_id).status != "expired":
        time.sleep(0.05)
    conn.execute("UPDATE batch_jobs SET provider_batch_id = NULL, status = 'prepared'")  # lost, and now expired
    emulator.faults(expire_after_fraction=None)
    run_night(conn, s3, openai_client, NORTH, D1)
    jobs = conn.execute("SELECT provider_batch_id, request_count, cost_usd FROM batch_jobs ORDER BY job_id").fetchall()
    assert jobs[0][0] == batch_id and float(jobs[0][2]) > 0  # the orphan was reattached and its cost recorded
    assert [j[1] for j in jobs] == [4, 2]  # only the two lines that never ran went out again
    assert emulator.stats()["batches_created"] == 2 and _statuses(conn) == {"graded": 4}
    paid = conn.execute("SELECT custom_id, count(*) FROM batch_lines WHERE output_tokens > 0 GROUP BY 1").fetchall()
    assert len(paid) == 4 and all(n == 1 for _, n in paid)
    # Each request carries the sum of its ledger lines over both sends (the lines that never ran add 0).
    mismatched = conn.execute(
        "SELECT r.custom_id FROM llm_requests r JOIN (SELECT custom_id, sum(input_tokens) AS i, "
        "sum(output_tokens) AS o, sum(cost_usd) AS c FROM batch_lines GROUP BY 1) l USING (custom_id) "
        "WHERE (r.input_tokens, r.output_tokens, r.cost_usd) IS DISTINCT FROM (l.i, l.o, l.c)").fetchall()
    assert mismatched == [] and conn.execute("SELECT min(input_tokens) FROM llm_requests").fetchone()[0] > 0


def test_a_batch_running_past_the_deadline_is_collected_by_the_next_night(conn, s3, emulator, openai_client):
    emulator.faults(timing={"in_progress": 2.5})
    _load(conn, s3, NORTH, _rows(2))
    _prepare(conn, s3, NORTH)
    steps = run_night(conn, s3, openai_client, NORTH, D1, deadline=time.time() + 0.5)
    assert "still running" in steps[-1].message and "next grade run" in steps[-1].message
    first = _release(conn, NORTH, D1)
    assert publish.day_counts(conn, NORTH, D1)["pending_model"] == 2
    batch_id = conn.execute("SELECT provider_batch_id FROM batch_jobs").fetchone()[0]
    while openai_client.batches.retrieve(batch_id).status != "completed":  # it ends after the night's deadline
        time.sleep(0.05)
    run_night(conn, s3, openai_client, NORTH, D2)  # next night: reconcile finds the job of night D1
    assert _statuses(conn) == {"graded": 2} and emulator.stats()["batches_created"] == 1
    out = tasks.republish_changed_days(NORTH.id, params={"exam_day": str(D2)})
    assert out["released"] == [f"{D1} v{first['version'] + 1}"]


def test_a_late_file_is_graded_the_next_night_and_released_as_a_new_version(conn, s3, emulator, openai_client):
    _load(conn, s3, NORTH, _rows(1))
    _prepare(conn, s3, NORTH, D1)
    run_night(conn, s3, openai_client, NORTH, D1)
    assert _release(conn, NORTH, D1)["version"] == 1
    # After day 1's cut-off, a file for day 1 arrives: the next morning's sweep loads it.
    _load(conn, s3, NORTH, _rows(1, prefix="late", text="a late answer about mitochondria"), name="late.csv")
    assert publish.day_counts(conn, NORTH, D1)["received"] == 4
    plan = _prepare(conn, s3, NORTH, D2)  # night 2 (no answers of its own)
    assert plan.late_days == [str(D1)] and plan.requests_queued == 1
    run_night(conn, s3, openai_client, NORTH, D2)
    counts = publish.day_counts(conn, NORTH, D1)
    assert counts["received"] == 0 and counts["answers"] == counts["graded_rule"] + counts["graded_llm"] == 8
    out = tasks.republish_changed_days(NORTH.id, params={"exam_day": str(D2)})
    assert out["released"] == [f"{D1} v2"]
