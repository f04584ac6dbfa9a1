"""Issue 17, the night: one runner per institution and night (a second one never submits), token-limit
refusals back off and alert, a 400 on upload splits the job, transient line codes are retried."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import date

from gradeflow.core import db
from gradeflow.core.config import OpenAISettings, get_institution
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put, run_night

D1 = date.fromisoformat(DAY)
NORTH = replace(get_institution("northfield"), retry_backoff_seconds=0.05, min_confidence=0.0,
                max_requests_per_batch=3)
SMALL_SHARDS = OpenAISettings(enqueued_token_cap=10_000_000, max_share_per_institution=0.3)


def _load(conn, s3, inst, n):
    rows = []
    for i in range(n):
        rows += answers_for(f"s{i}", f"st{i}", f"answer number {i} about ATP and energy", minute=i % 60)
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
    ingest_institution(inst, conn, s3)


def _prepare(conn, s3, inst, settings):
    prepare.order_submissions(conn, inst, D1)
    prepare.grade_by_rule(conn, inst, D1)
    return prepare.build_batches(Night(inst, D1, conn, s3, settings=settings))


def _statuses(conn, inst=NORTH):
    return dict(conn.execute("SELECT status, count(*) FROM llm_requests WHERE institution_id = %s GROUP BY 1",
                             (inst.id,)).fetchall())


def test_two_runners_of_one_night_never_pay_twice(conn, s3, emulator, openai_client):
    emulator.faults(timing={"validating": 0.2, "in_progress": 0.5, "finalizing": 0.1}, error_line_every=4)
    _load(conn, s3, NORTH, 8)
    plan = _prepare(conn, s3, NORTH, SMALL_SHARDS)
    jobs = conn.execute("SELECT count(*) FROM batch_jobs").fetchone()[0]
    assert jobs >= 2, plan
    start, errors, steps = threading.Barrier(2), [], {}

    def runner(name):
        try:
            with db.connect(institution=NORTH.id) as own:
                start.wait(10)
                steps[name] = run_night(own, s3, openai_client, NORTH, D1, settings=SMALL_SHARDS,
                                                recheck_seconds=0.1)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    stats = emulator.stats()
    waves = conn.execute("SELECT count(*) FROM batch_jobs").fetchone()[0]
    assert stats["batches_created"] == waves  # each job (first wave and retries) sent once, never by both runners
    assert stats["files_uploaded"] == waves
    assert set(_statuses(conn)) <= {"graded", "review"} and "queued" not in _statuses(conn)
    billed = conn.execute("SELECT count(*), count(DISTINCT (job_id, custom_id)) FROM batch_lines").fetchone()
    assert billed[0] == billed[1]
    messages = [s.message for run in steps.values() for s in run]
    assert any("another grade runner" in m for m in messages), messages


def _line_tokens(conn):
    return conn.execute("SELECT max(est_input_tokens) FROM batch_lines").fetchone()[0]


def test_token_limit_refusals_back_off_exponentially_shrink_the_job_and_alert(conn, s3, emulator, openai_client,
                                                                            caplog):
    # Every wait of this night is scaled down together (backoff, batch phases, polls, deadline: 2 s), so the
    # number of refused batches is what it is at twice the times.
    inst = replace(NORTH, max_requests_per_batch=4, retry_backoff_seconds=0.025)
    _load(conn, s3, inst, 4)
    _prepare(conn, s3, inst, SMALL_SHARDS)
    one = _line_tokens(conn)
    emulator.faults(token_limit=10, timing={"validating": 0.0125, "in_progress": 0.0125, "finalizing": 0.0125})
    with caplog.at_level("ERROR", logger="gradeflow.airflow.alerts"):
        steps = run_night(conn, s3, openai_client, inst, D1, deadline=time.time() + 2, settings=SMALL_SHARDS,
                          poll=0.025, recheck_seconds=0.025)
    assert steps[-1].done
    sizes = [r[0] for r in conn.execute("SELECT request_count FROM batch_jobs ORDER BY job_id").fetchall()]
    assert sizes[0] == 4 and sizes[-1] == 1 and sorted(sizes, reverse=True) == sizes  # halved down to one line
    created = emulator.stats()["batches_created"]
    # a constant 0.025 s interval would send dozens in 2 s; doubling waits (0.05, 0.1, 0.2, ... s) send a handful
    assert created <= 8, created
    # each wave waited from the last refusal for backoff * 2**(jobs refused so far), not for a constant interval
    jobs = conn.execute("SELECT wave, created_at, collected_at FROM batch_jobs ORDER BY job_id").fetchall()
    for wave in sorted({w for w, _, _ in jobs})[1:]:
        created_at = min(c for w, c, _ in jobs if w == wave)
        refused = [done for _, _, done in jobs if done is not None and done <= created_at]
        assert (created_at - max(refused)).total_seconds() >= 0.025 * 2 ** len(refused), (wave, jobs)
    assert any("token_limit_exceeded" in r.getMessage() and "refused" in r.getMessage() for r in caplog.records)
    # the same work fits once the real cap allows a line: everything is graded, nothing reviewed
    emulator.faults(token_limit=int(one * 1.5))
    run_night(conn, s3, openai_client, inst, D1 + (D1 - D1), settings=SMALL_SHARDS, recheck_seconds=0.05)
    assert _statuses(conn, inst) == {"graded": 4}


def test_a_400_on_upload_splits_the_job_and_never_blocks_the_jobs_behind_it(conn, s3, emulator, openai_client):
    inst = replace(NORTH, max_requests_per_batch=4)
    _load(conn, s3, inst, 6)
    _prepare(conn, s3, inst, SMALL_SHARDS)
    assert [r[0] for r in conn.execute("SELECT request_count FROM batch_jobs ORDER BY job_id")] == [4, 2]
    emulator.faults(max_requests_per_file=2)  # the API's per-file line limit is lower than configured
    steps = run_night(conn, s3, openai_client, inst, D1, settings=SMALL_SHARDS, recheck_seconds=0.05)
    assert steps[-1].done
    assert _statuses(conn, inst) == {"graded": 6}
    sizes = [r[0] for r in conn.execute("SELECT request_count FROM batch_jobs ORDER BY job_id")]
    assert sizes[:2] == [4, 2] and all(s <= 2 for s in sizes[2:])  # the refused job went again in halves
    assert emulator.stats()["batches_created"] == len(sizes) - 1  # the refused file never became a batch
