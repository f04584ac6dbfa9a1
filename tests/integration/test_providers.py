"""The batch-provider seam against both providers on the emulator, over HTTP with the official SDK.

openai_batch runs the Batch API (files, batches); openai_chat sends each line to /v1/chat/completions as a
local batch. The emulator grades both the same way, so a night on either must give the same grades and the
same ledger; the chat provider's concurrency, rate limit, retries and resume are counted at /_emulator/stats.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import httpx

from devstack import stack
from devstack.batch_emulator import _sha
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.grading import batch, prepare, providers
from gradeflow.grading import night as grading
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution

from .helpers import DAY, EXAM, answers_for, csv_bytes, exam_bytes, put, run_night

EXAM_DAY = date.fromisoformat(DAY)
NORTH = replace(get_institution("northfield"), min_confidence=0.0, retry_backoff_seconds=0.05)
FAST = (("retry_base_seconds", 0.01), ("retry_max_seconds", 0.05), ("step_pause_seconds", 0.0))
CHAT = replace(NORTH, provider="openai_chat", conn_id="gradeflow_openai", chat=(("chunk_lines", 3), *FAST))
ANSWERS = ["The mitochondrion produces ATP through cellular respiration, supplying energy.", "it makes atp",
           "Energy.", "cellular respiration happens there", "ATP and energy from respiration", "no idea",
           "It is the powerhouse: ATP", "respiration"]


def _body_key(body: dict) -> str:
    """The emulator's key of one request body in stats['chat_completed_by_body']."""
    return _sha(json.dumps(body, sort_keys=True, default=str))[:16]


def _fresh(admin_conn, s3, emulator) -> None:
    """Empty tables, bucket and emulator, as the fixtures do at a test's start."""
    tables = [r[0] for r in admin_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
    admin_conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    db.migrate(admin_conn)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.BUCKET):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=stack.BUCKET, Key=item["Key"])
    httpx.post(f"{emulator.url}/_emulator/reset", timeout=10).raise_for_status()


def _night(conn, s3, provider, inst) -> dict:
    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/northfield/{DAY}/submissions/a.csv", csv_bytes(
        [row for i, text in enumerate(ANSWERS) for row in answers_for(f"s{i}", f"st{i}", text, minute=i)]))
    ingest_institution(inst, conn, s3)
    prepare.order_submissions(conn, inst, EXAM_DAY)
    prepare.grade_by_rule(conn, inst, EXAM_DAY)
    prepare.build_batches(Night(inst, EXAM_DAY, conn, s3))
    steps = run_night(conn, s3, provider, inst, EXAM_DAY, recheck_seconds=0.1)
    grades = conn.execute("SELECT submission_id, question_id, grader, score, rationale, confidence, attempt "
                          "FROM grades WHERE is_current ORDER BY 1, 2").fetchall()
    ledger = conn.execute("SELECT custom_id, attempt, est_input_tokens, input_tokens, output_tokens, cost_usd, outcome "
                          "FROM batch_lines ORDER BY custom_id, attempt").fetchall()
    jobs = conn.execute("SELECT provider, provider_batch_id, status, input_tokens, output_tokens, cost_usd "
                        "FROM batch_jobs ORDER BY job_id").fetchall()
    return {"grades": grades, "ledger": ledger, "jobs": jobs, "steps": len(steps)}


def test_a_night_on_openai_chat_gives_the_grades_and_ledger_of_openai_batch(conn, admin_conn, s3, emulator,
                                                                              openai_client):
    on_batch = _night(conn, s3, grading.provider_for(NORTH), NORTH)
    stats = emulator.stats()
    assert stats["batches_created"] >= 1 and stats["chat_requests"] == 0
    _fresh(admin_conn, s3, emulator)
    on_chat = _night(conn, s3, grading.provider_for(CHAT, s3=s3), CHAT)
    stats = emulator.stats()
    assert stats["batches_created"] == 0 and stats["files_uploaded"] == 0  # nothing went to the Batch API
    llm = [g for g in on_chat["grades"] if g[2] == "llm"]
    assert len(llm) == len(ANSWERS) and on_chat["grades"] == on_batch["grades"]
    assert on_chat["ledger"] == on_batch["ledger"]  # tokens, cost and outcome per line and attempt
    assert [j[0] for j in on_chat["jobs"]] == ["openai_chat"] and on_chat["jobs"][0][1].startswith("chatbatch_")
    assert [j[0] for j in on_batch["jobs"]] == ["openai_batch"] and on_batch["jobs"][0][1].startswith("batch_")
    assert [j[2:] for j in on_chat["jobs"]] == [j[2:] for j in on_batch["jobs"]]
    # chunk_lines=3: several steps of the night, and still every line sent (and paid) exactly once.
    assert on_chat["steps"] > 3
    assert stats["chat_completed"] == len(ANSWERS) and set(stats["chat_completed_by_body"].values()) == {1}


def _lines(n: int) -> list[dict]:
    question = {**EXAM["questions"][3], "qtype": "short_answer"}
    return [batch.build_request(f"gf1-test{i:04d}", "gpt-4.1-mini", question, f"answer number {i}: ATP")
            for i in range(n)]


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _run(provider, batch_id: str, limit: int = 200):
    for _ in range(limit):
        remote = provider.work(batch_id)
        if remote.status in batch.TERMINAL_STATUSES:
            return remote
    raise AssertionError(f"{batch_id} did not finish in {limit} steps")


def test_chat_provider_bounds_concurrency_and_rides_out_a_429_storm(s3, emulator, openai_client):
    lines = _lines(24)
    emulator.faults(chat_latency_ms=60, chat_rate_limit_next=12, chat_server_error_next=3, chat_malformed_next=2)
    provider = providers.get("openai_chat", CHAT, s3=s3, concurrency=3, requests_per_minute=2400,
                             chunk_lines=100, max_retries=8)
    started = time.monotonic()
    remote = _run(provider, provider.create(provider.upload("in.jsonl", _jsonl(lines)), {"test": "storm"}).id)
    elapsed = time.monotonic() - started
    stats = emulator.stats()
    assert remote.status == "completed" and remote.error_file_id is None
    assert remote.request_counts.total == remote.request_counts.completed == 24
    assert (stats["chat_rate_limited"], stats["chat_server_errors"], stats["chat_malformed"]) == (12, 3, 2)
    assert stats["chat_requests"] == 24 + 12 + 3 + 2  # every refused request retried, nothing else sent again
    assert 2 <= stats["chat_peak_in_flight"] <= 3, stats["chat_peak_in_flight"]  # concurrent, never above the bound
    assert elapsed >= (stats["chat_requests"] - 1) * 60 / 2400  # the rate limit spaced the request starts
    out = {line["custom_id"]: line for line in provider.iter_lines(remote.output_file_id)}
    assert set(out) == {line["custom_id"] for line in lines}
    for line in lines:  # the Batch API's output shape, graded as the night parses it
        assert out[line["custom_id"]]["response"]["status_code"] == 200
        assert batch.parse_line(out[line["custom_id"]], 3.0).ok
    assert set(stats["chat_completed_by_body"].values()) == {1}


def test_a_storm_longer_than_the_retries_gives_retryable_error_lines(s3, emulator, openai_client):
    lines = _lines(4)
    emulator.faults(chat_rate_limit_next=100)
    provider = providers.get("openai_chat", CHAT, s3=s3, concurrency=2, max_retries=1)
    remote = _run(provider, provider.create(provider.upload("in.jsonl", _jsonl(lines)), {}).id)
    assert remote.status == "completed" and remote.output_file_id is None
    assert remote.request_counts.failed == 4 and emulator.stats()["chat_requests"] == 8
    for line in provider.iter_lines(remote.error_file_id):  # as the Batch API writes a refused line
        assert line["response"]["status_code"] == 429
        result = batch.parse_line(line, 3.0)
        assert (result.code, result.retryable) == ("rate_limit_exceeded", True)  # the night sends it again later


KILLED_WORKER = """
import sys
from dataclasses import replace
from gradeflow.core.config import get_institution
from gradeflow.grading import providers
inst = replace(get_institution("northfield"), provider="openai_chat", conn_id="gradeflow_openai")
provider = providers.get("openai_chat", inst, concurrency=2, chunk_lines=1000)
print("working", flush=True)
provider.work(sys.argv[1])
"""


def test_a_killed_chat_batch_resumes_without_sending_a_finished_line_again(s3, emulator, openai_client,
                                                                           embedded_stack, tmp_path):
    lines = _lines(20)
    provider = providers.get("openai_chat", CHAT, s3=s3, concurrency=2, chunk_lines=1000)
    batch_id = provider.create(provider.upload("in.jsonl", _jsonl(lines)), {}).id
    emulator.faults(chat_latency_ms=150)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "plugins"), str(root)])}
    errors = tmp_path / "worker.stderr"
    with errors.open("wb") as stderr:
        worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, batch_id], env=env,
                                  stdout=subprocess.PIPE, stderr=stderr)
    assert worker.stdout.readline().strip() == b"working", errors.read_text()
    deadline = time.monotonic() + 180  # generous: under a loaded machine the worker starts slowly
    while len(provider._done(batch_id)) < 4:  # some lines stored: the worker is mid-chunk
        assert worker.poll() is None, f"the worker died before storing 4 lines:\n{errors.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the worker stored {len(provider._done(batch_id))} lines in 180 s"
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)  # no clean-up, no finally: as an OOM kill or a lost node
    worker.wait(30)
    stored_before = provider._done(batch_id)
    assert 4 <= len(stored_before) < len(lines)
    time.sleep(0.5)  # requests the dead worker had in flight finish at the emulator, unheard
    emulator.faults(chat_latency_ms=0)
    remote = _run(providers.get("openai_chat", CHAT, s3=s3, concurrency=2), batch_id)  # a new worker resumes
    assert remote.status == "completed" and remote.request_counts.completed == len(lines)
    by_body = emulator.stats()["chat_completed_by_body"]
    keys = [_body_key(line["body"]) for line in lines]
    assert all(by_body[keys[i]] == 1 for i in stored_before)  # a stored line is never sent again
    twice = [i for i, key in enumerate(keys) if by_body[key] > 1]
    assert len(twice) <= 2 and not set(twice) & stored_before  # at most the `concurrency` requests in flight
    out = {line["custom_id"] for line in provider.iter_lines(remote.output_file_id)}
    assert out == {line["custom_id"] for line in lines}


def test_a_cancelled_chat_batch_delivers_its_finished_lines(s3, emulator, openai_client):
    lines = _lines(6)
    provider = providers.get("openai_chat", CHAT, s3=s3, concurrency=2, chunk_lines=2)
    batch_id = provider.create(provider.upload("in.jsonl", _jsonl(lines)), {}).id
    assert provider.work(batch_id).status == "in_progress"
    assert provider.cancel(batch_id).status == "cancelling"
    remote = provider.work(batch_id)
    assert remote.status == "cancelled" and remote.request_counts.completed == 2
    assert emulator.stats()["chat_completed"] == 2  # nothing sent after the cancel
    assert len(list(provider.iter_lines(remote.output_file_id))) == 2


def test_a_result_line_holding_unicode_line_separators_is_read_as_one_line(s3, emulator, openai_client):
    """JSON allows U+0085, U+2028 and U+2029 unescaped inside a string (a model's feedback quoting a student
    may hold one); a file's lines end at "\\n" only, so each provider reads such a line whole, as it was."""
    lines = _lines(3)
    lines[1]["body"]["messages"][-1]["content"] += " line\u2028separator\u2029paragraph\x85next"
    data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()
    assert "\u2028".encode() in data
    for provider in (providers.get("openai_batch", NORTH, sdk_client=openai_client),
                     providers.get("openai_chat", CHAT, s3=s3)):
        file_id = provider.upload("separators.jsonl", data)
        assert [json.loads(raw) for raw in provider.iter_raw_lines(file_id)] == lines, provider.name
        assert list(provider.iter_lines(file_id)) == lines, provider.name
        assert [batch.read_line(raw) for raw in provider.iter_raw_lines(file_id)][1]["custom_id"] == "gf1-test0001"
