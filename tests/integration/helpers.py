"""Small builders shared by the integration tests: exam files, submission rows, a small day graded and released."""

from __future__ import annotations

import csv
import io
import json
import time

DAY = "2026-11-23"
EXAM = {
    "exam_id": "bio-101",
    "title": "Biology 101",
    "questions": [
        {"question_id": "q1", "type": "multiple_choice", "max_points": 1, "options": ["A", "B", "C"],
         "answer_key": "B", "prompt": "Which organelle makes ATP? A nucleus B mitochondrion C ribosome"},
        {"question_id": "q2", "type": "true_false", "max_points": 1, "answer_key": False,
         "prompt": "DNA is single-stranded."},
        {"question_id": "q3", "type": "numeric", "max_points": 2, "answer_key": 46, "tolerance": 0,
         "prompt": "How many chromosomes does a human body cell have?"},
        {"question_id": "q4", "type": "short_answer", "max_points": 3, "prompt": "What does the mitochondrion do?",
         "rubric": "One point each for ATP, cellular respiration and energy.",
         "reference_answer": "The mitochondrion produces ATP through cellular respiration, supplying energy."},
    ],
}
COLUMNS = ["submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at"]


def exam_bytes(exam: dict | None = None) -> bytes:
    return json.dumps(exam or EXAM).encode()


def answers_for(submission_id: str, student_id: str, q4: str = "It makes ATP by cellular respiration",
                minute: int = 0, q1: str = "B") -> list[dict]:
    stamp = f"{DAY}T10:{minute:02d}:00-05:00"
    values = {"q1": q1, "q2": "false", "q3": "46", "q4": q4}
    return [{"submission_id": submission_id, "student_id": student_id, "exam_id": "bio-101", "question_id": q,
             "answer": a, "submitted_at": stamp} for q, a in values.items()]


def csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def put(s3, key: str, data: bytes) -> None:
    s3.put_object(Bucket="gradeflow", Key=key, Body=data)


def keys(s3, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket="gradeflow", Prefix=prefix).get("Contents", []))


def run_night(conn, s3, client, inst, night, deadline=None, poll: float = 0.025, max_steps: int = 10_000,
              recheck_seconds: float = 0.5, settings=None) -> list:
    """The whole night without Airflow: advance, sleep until the next event (what the trigger of
    gradeflow.airflow.waiting does, synchronously), repeat. `client` is a BatchProvider or a plain SDK client.
    The tests' emulator ends a batch in ~30 ms (timing scale 0.02), so it is polled every 25 ms."""
    from gradeflow.grading import night as grading
    from gradeflow.grading.context import Night

    tonight = Night(inst, night, conn, s3, client, settings, deadline, recheck_seconds)
    client = tonight.provider
    steps = []
    for _ in range(max_steps):
        step = grading.advance(tonight)
        steps.append(step)
        if step.done:
            return steps
        while not (step.wake_at is not None and time.time() >= step.wake_at) and not any(
                client.retrieve(b).status in grading.TERMINAL for b in step.wait_batch_ids):
            time.sleep(poll)
    raise RuntimeError(f"night {night} of {inst.id} did not finish in {max_steps} steps")


def grade_all_jobs(conn, s3, client, inst, exam_day, timeout: float = 30) -> list:
    """Submit every built job, wait for each batch to end (the emulator is fast), collect it; no retry wave."""
    from gradeflow.grading import night as grading
    from gradeflow.grading.context import Night

    tonight = Night(inst, exam_day, conn, s3, client)
    job_ids = grading.submit_jobs(tonight)
    for job_id in job_ids:
        batch_id = grading.get_job(conn, inst, job_id)["provider_batch_id"]
        deadline = time.monotonic() + timeout
        while client.batches.retrieve(batch_id).status not in grading.TERMINAL:
            assert time.monotonic() < deadline
            time.sleep(0.025)
        grading.collect_job(tonight, job_id, allow_retry=False)
    return job_ids


def release_day(conn, s3, inst, exam_day) -> dict:
    """Validate, release and export the day (the gate must pass); the release row."""
    from gradeflow.release import publish

    gate = publish.validate(conn, inst, exam_day)
    assert gate.success, gate.failures
    released = publish.release(conn, inst, exam_day, gate.validation_id)
    publish.export(conn, s3, inst, exam_day, released["release_id"])
    return released
