"""Prepare, grade and publish against the real stack: Postgres, S3 and the Batch API emulator via the SDK."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from datetime import date

import pyarrow.parquet as pq
import pytest

from gradeflow.core.config import get_institution
from gradeflow.grading import night as grading
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from gradeflow.release import publish

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put, run_night

# Batch mechanics are tested with confidence routing off; tests/integration/test_review_loop.py tests it.
NORTH = replace(get_institution("northfield"), min_confidence=0.0)
EXAM_DAY = date.fromisoformat(DAY)
GOOD = "The mitochondrion produces ATP through cellular respiration, supplying energy."


def _load(conn, s3, rows):
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)


def _prepare(conn, s3):
    prepare.order_submissions(conn, NORTH, EXAM_DAY)
    prepare.grade_by_rule(conn, NORTH, EXAM_DAY)
    return prepare.build_batches(Night(NORTH, EXAM_DAY, conn, s3))


def _wait(client, conn, timeout=30):
    deadline = time.monotonic() + timeout
    for job in conn.execute("SELECT provider_batch_id FROM batch_jobs WHERE provider_batch_id IS NOT NULL").fetchall():
        while client.batches.retrieve(job[0]).status not in grading.TERMINAL:
            assert time.monotonic() < deadline, "batch did not finish"
            time.sleep(0.025)


def _grade(conn, s3, client, inst=NORTH):
    """What the grade DAG does: the night's waves (reconcile, submit, wait, collect, retry after a backoff).

    Returns one collect report per job, in job order (the ledger's view of each job).
    """
    inst = replace(inst, retry_backoff_seconds=0.05)
    run_night(conn, s3, client, inst, EXAM_DAY)
    return [_job_report(conn, job_id) for (job_id,) in conn.execute(
        "SELECT job_id FROM batch_jobs WHERE collected_at IS NOT NULL ORDER BY job_id").fetchall()]


def _job_report(conn, job_id):
    row = conn.execute(
        "SELECT j.status, j.input_tokens, count(*) FILTER (WHERE l.outcome = 'graded'), "
        "count(*) FILTER (WHERE l.outcome <> 'graded' AND l.input_tokens > 0 OR l.outcome IN ('review', 'retry') "
        "AND l.output_tokens IS NOT NULL), count(*) FILTER (WHERE l.outcome = 'retry') "
        "FROM batch_jobs j JOIN batch_lines l USING (job_id) WHERE j.job_id = %s GROUP BY j.status, j.input_tokens",
        (job_id,)).fetchone()
    graded = conn.execute("SELECT count(*) FROM grades WHERE job_id = %s", (job_id,)).fetchone()[0]
    return grading.CollectReport(job_id, row[0], collected=True, lines_ok=row[2], input_tokens=row[1] or 0,
                                 lines_requeued=row[4], lines_failed=row[3], answers_graded=graded)


def _counts(conn):
    return publish.day_counts(conn, NORTH, EXAM_DAY)


def test_whole_day_conserves_every_answer_and_releases_once(conn, s3, emulator, openai_client):
    rows = (answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "it makes atp") +
            answers_for("s3", "st3", "It makes ATP", q1="C") + answers_for("s4", "st4", ""))
    _load(conn, s3, rows)
    plan = _prepare(conn, s3)
    # s2 and s3 gave the same answer (case and spaces differ): merged into one request; s4's empty one scored by rule.
    assert (plan.answers, plan.distinct_requests, plan.jobs_written) == (3, 2, 1)
    reports = _grade(conn, s3, openai_client)
    assert reports[0].lines_ok == 2 and reports[0].answers_graded == 3 and reports[0].input_tokens > 0
    counts = _counts(conn)
    assert (counts["answers"], counts["graded_rule"], counts["graded_llm"], counts["in_review"]) == (16, 13, 3, 0)
    assert counts["answers"] == counts["graded_rule"] + counts["graded_llm"] + counts["in_review"]
    scores = dict(conn.execute("SELECT submission_id, score FROM grades WHERE question_id = 'q4'").fetchall())
    assert scores["s2"] == scores["s3"] and scores["s1"] > scores["s2"] > scores["s4"] == 0

    gate = publish.validate(conn, NORTH, EXAM_DAY)
    assert gate.success, gate.failures
    released = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    key = publish.export(conn, s3, NORTH, EXAM_DAY, released["release_id"])
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read()))
    assert table.num_rows == 16 and set(table.column("institution_id").to_pylist()) == {"northfield"}
    assert key == f"releases/northfield/{DAY}/results-v1.parquet"

    again = publish.release(conn, NORTH, EXAM_DAY, publish.validate(conn, NORTH, EXAM_DAY).validation_id)
    assert again["new"] is False and again["version"] == 1


def test_rerunning_every_step_changes_nothing_and_pays_once(conn, s3, emulator, openai_client):
    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)
    first = _grade(conn, s3, openai_client)
    snapshot = conn.execute("SELECT count(*), sum(score) FROM grades").fetchone()
    second_plan = _prepare(conn, s3)
    second = _grade(conn, s3, openai_client)
    assert second_plan.jobs_written == 0 and second == first and len(first) == 1
    assert conn.execute("SELECT count(*), sum(score) FROM grades").fetchone() == snapshot
    assert emulator.stats()["batches_created"] == 1


def test_reattaches_to_a_batch_whose_id_was_lost(conn, s3, emulator, openai_client):
    """A crash after batches.create and before the id was saved: the rerun finds it by fingerprint."""
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    grading.submit_jobs(Night(NORTH, EXAM_DAY, conn, s3, openai_client))
    conn.execute("UPDATE batch_jobs SET provider_batch_id = NULL, status = 'prepared'")
    conn.commit()
    reports = _grade(conn, s3, openai_client)
    assert emulator.stats()["batches_created"] == 1 and reports[0].lines_ok == 1


@pytest.mark.parametrize(("faults", "reason", "code"), [
    ({"malformed_json_every": 1}, "truncated", "truncated"),
    ({"refusal_every": 1}, "refusal", "refused"),
    ({"error_line_every": 1}, "server_error", "attempts_exhausted"),
    ({"fail_validation": True}, "batch failed", "batch_failed"),
    ({"all_fail": True}, "server_error", "attempts_exhausted"),
    ({"expire_after_fraction": 0.0}, "batch_expired", "attempts_exhausted"),
])
def test_bad_batch_outcomes_go_to_review_not_crash(conn, s3, emulator, openai_client, faults, reason, code):
    emulator.faults(**faults)
    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)
    reports = _grade(conn, s3, openai_client)
    assert all(r.collected for r in reports) and sum(r.lines_ok for r in reports) == 0
    counts = _counts(conn)
    assert counts["in_review"] == 2 and counts["graded_llm"] == 0
    assert counts["answers"] == counts["graded_rule"] + counts["in_review"]
    details = [r[0] for r in conn.execute("SELECT detail FROM review_queue").fetchall()]
    assert all(reason in d for d in details), details
    # The reason is a code from the closed set; the detail keeps what the API said.
    assert {r[0] for r in conn.execute("SELECT reason FROM review_queue")} == {code}
    assert publish.validate(conn, NORTH, EXAM_DAY).success  # review is accounted for: the day can still release


def test_out_of_range_model_score_goes_to_review_with_the_clamped_suggestion(conn, s3, emulator, openai_client):
    emulator.faults(out_of_range_every=1)
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    score, raw, status = conn.execute("SELECT score, raw_score, status FROM llm_requests").fetchone()
    assert float(score) == 3.0 and float(raw) > 3.0 and status == "review"
    assert conn.execute("SELECT reason FROM review_queue").fetchall() == [("score_out_of_range",)]
    assert _counts(conn)["graded_llm"] == 0


def test_partial_expiry_keeps_finished_lines_and_resends_only_the_rest(conn, s3, emulator, openai_client):
    emulator.faults(expire_after_fraction=0.5)
    rows = [r for i in range(4) for r in answers_for(f"s{i}", f"st{i}", f"answer number {i} about ATP")]
    _load(conn, s3, rows)
    _prepare(conn, s3)
    first, second, third = _grade(conn, s3, openai_client)
    assert first.batch_status == "expired" and (first.lines_ok, first.lines_requeued) == (2, 2)
    # Each later wave carries only the lines that did not run, and each expires half-way too.
    assert (second.lines_ok, second.lines_requeued) == (1, 1)
    assert (third.lines_ok, third.lines_requeued) == (0, 0)  # the third attempt was the last: to review
    sizes = [r[0] for r in conn.execute("SELECT request_count FROM batch_jobs ORDER BY job_id")]
    assert sizes == [4, 2, 1] and emulator.stats()["batches_created"] == 3
    assert _counts(conn)["graded_llm"] == 3 and _counts(conn)["in_review"] == 1
    attempts = dict(conn.execute("SELECT status, max(attempt) FROM llm_requests GROUP BY status").fetchall())
    assert attempts == {"graded": 2, "review": 3}


def test_unfinished_model_work_is_released_as_pending_then_a_new_version(conn, s3, emulator, openai_client):
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)  # batches written, not graded yet at release time
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    assert gate.success, gate.failures
    first = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    pending = conn.execute("SELECT pending_reason, count(*) FROM release_results WHERE release_id = %s "
                           "AND status = 'pending' GROUP BY 1", (first["release_id"],)).fetchall()
    assert pending == [("pending_model", 1)]
    _grade(conn, s3, openai_client)
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    second = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    assert second["version"] == first["version"] + 1
    assert conn.execute("SELECT count(*) FROM release_results WHERE release_id = %s AND status = 'pending'",
                        (second["release_id"],)).fetchone()[0] == 0


def test_a_corrupt_state_blocks_the_release(conn, s3, emulator, openai_client):
    """An answer counted twice (graded and in review at once) fails the gate: nothing is released."""
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                 "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades LIMIT 1")
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    assert not gate.success and any("outcomes" in f or "accounted" in f for f in gate.failures)
    with pytest.raises(publish.ReleaseBlocked):
        publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 0


def test_over_budget_work_is_deferred_not_reviewed(conn, s3, emulator, openai_client):
    from dataclasses import replace

    poor = replace(NORTH, daily_token_budget=1)
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    prepare.order_submissions(conn, poor, EXAM_DAY)
    prepare.grade_by_rule(conn, poor, EXAM_DAY)
    plan = prepare.build_batches(Night(poor, EXAM_DAY, conn, s3))
    assert plan.jobs_written == 0 and plan.requests_deferred == 1
    assert conn.execute("SELECT count(*) FROM review_queue").fetchone()[0] == 0
    counts = publish.day_counts(conn, poor, EXAM_DAY)
    assert counts["deferred"] == 1 and counts["in_review"] == 0
    states = dict(conn.execute("SELECT state, count(*) FROM answer_lifecycle GROUP BY 1").fetchall())
    assert states == {"graded": counts["graded_rule"], "deferred": 1}


def test_batch_input_has_no_student_identity(conn, s3, emulator, openai_client):
    _load(conn, s3, answers_for("sub-secret-1", "student-secret-42", GOOD))
    _prepare(conn, s3)
    key = conn.execute("SELECT input_key FROM batch_jobs").fetchone()[0]
    body = s3.get_object(Bucket="gradeflow", Key=key)["Body"].read().decode()
    assert "student-secret-42" not in body and "sub-secret-1" not in body
    line = json.loads(body.splitlines()[0])
    assert line["custom_id"].startswith("gf1-")
    # Round trip: the opaque id leads back to exactly the answers it stands for, and only through our DB.
    back = conn.execute(
        "SELECT a.submission_id, a.question_id FROM llm_requests r JOIN answers a ON a.institution_id = "
        "r.institution_id AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256 "
        "WHERE r.custom_id = %s", (line["custom_id"],)).fetchall()
    assert back == [("sub-secret-1", "q4")]


def test_two_institutions_with_the_same_ids_never_mix(conn, s3, emulator, openai_client, tenant_conn, admin_conn):
    """Same exam id, submission ids and answers at two institutions: each night sees only its own."""
    lake = get_institution("lakeshore")
    rows_north = answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy")
    rows_lake = answers_for("s1", "other-student", "nothing relevant")
    for prefix, rows in (("northfield", rows_north), ("lakeshore", rows_lake)):
        put(s3, f"incoming/{prefix}/{DAY}/exams/bio-101.json", exam_bytes())
        put(s3, f"incoming/{prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
    for inst in (NORTH, lake):  # each night on its own connection, bound to its institution, as in the tasks
        conn = tenant_conn(inst.id)
        ingest_institution(inst, conn, s3)
        prepare.order_submissions(conn, inst, EXAM_DAY)
        prepare.grade_by_rule(conn, inst, EXAM_DAY)
        tonight = Night(inst, EXAM_DAY, conn, s3, openai_client)
        prepare.build_batches(tonight)
        job_ids = grading.submit_jobs(tonight)
        _wait(openai_client, conn)
        for job_id in job_ids:
            grading.collect_job(tonight, job_id)
        gate = publish.validate(conn, inst, EXAM_DAY)
        assert gate.success, gate.failures
        released = publish.release(conn, inst, EXAM_DAY, gate.validation_id)
        publish.export(conn, s3, inst, EXAM_DAY, released["release_id"])
    conn = admin_conn  # the assertions look across institutions
    per_inst = dict(conn.execute("SELECT institution_id, count(*) FROM release_results GROUP BY 1").fetchall())
    assert per_inst == {"northfield": 8, "lakeshore": 4}
    students = {r[0] for r in conn.execute(
        "SELECT DISTINCT student_id FROM release_results WHERE institution_id = 'lakeshore'")}
    assert students == {"other-student"}
    for prefix, expected in (("northfield", {"st1", "st2"}), ("lakeshore", {"other-student"})):
        body = s3.get_object(Bucket="gradeflow", Key=f"releases/{prefix}/{DAY}/results-v1.parquet")["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        assert set(table.column("student_id").to_pylist()) == expected
        assert set(table.column("institution_id").to_pylist()) == {prefix}
    lake_grade = conn.execute("SELECT score FROM grades WHERE institution_id = 'lakeshore' AND question_id = 'q4'")
    assert float(lake_grade.fetchone()[0]) == 0.0  # its own (off-topic) answer, not northfield's good one
