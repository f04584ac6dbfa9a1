"""Benchmark: building the night's Batch API requests and collecting their results, at scale.

    python -m devstack.bench_batches [--requests 350000]

Starts (or reuses) the embedded stack in .devstack-bench-batches/, loads N distinct free-text answers
straight into the tables (COPY; ingest has its own benchmark), then times, through the same functions
the DAGs call: `prepare.build_batches` (one query, exact token counts, strict FIFO admission, JSONL
written to S3, jobs and ledger rows in bulk) and `grading.collect_job` over every job (result files
streamed, staged with COPY, one statement per step). Submission and the emulator's own time are not
counted. Prints rows, seconds, rows/s and the process's peak memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

from devstack import stack

DAY = date(2026, 11, 23)


def _load(raw, n: int) -> None:
    raw.execute("INSERT INTO ingested_files (file_id, institution_id, exam_day, s3_key, file_name, kind, sha256, "
                "size_bytes, status) VALUES (1, 'northfield', %s, 'bench', 'bench.csv', 'submissions', 'x', 0, "
                "'loaded')", (DAY,))
    raw.execute("INSERT INTO exams (institution_id, exam_id, exam_day, title, definition_sha256) "
                "VALUES ('northfield', 'bench', %s, 'bench', 'x')", (DAY,))
    raw.execute("INSERT INTO questions (institution_id, exam_id, question_id, position, qtype, max_points, prompt, "
                "rubric, reference_answer) VALUES ('northfield', 'bench', 'q1', 1, 'short_answer', 3, "
                "'What does the mitochondrion do?', 'One point each for ATP, cellular respiration and energy.', "
                "'The mitochondrion produces ATP through cellular respiration, supplying energy.')")
    # COPY cannot write a table under row-level security (FORCEd on the owner too): stage, then INSERT ... SELECT.
    raw.execute("CREATE TEMP TABLE bench_submissions (LIKE submissions INCLUDING DEFAULTS)")
    raw.execute("CREATE TEMP TABLE bench_answers (LIKE answers INCLUDING DEFAULTS)")
    with raw.cursor() as cur:
        with cur.copy("COPY bench_submissions (institution_id, submission_id, exam_id, student_id, exam_day, "
                      "submitted_at, source_file_id) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row(("northfield", f"s{i:07d}", "bench", f"st{i:07d}", DAY, "2026-11-23T10:00:00Z", 1))
        with cur.copy("COPY bench_answers (institution_id, submission_id, question_id, exam_id, exam_day, answer_text, "
                      "answer_sha256, source_file_id, source_row) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row(("northfield", f"s{i:07d}", "q1", "bench", DAY,
                                f"answer {i}: it makes ATP by cellular respiration", f"{i:064x}", 1, i + 1))
    raw.execute("INSERT INTO submissions SELECT * FROM bench_submissions")
    raw.execute("INSERT INTO answers SELECT * FROM bench_answers")
    raw.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=350_000)
    args = parser.parse_args()
    info = stack.up(stack.PROJECT_ROOT / ".devstack-bench-batches", emulator_timing_scale=0)
    os.environ.update(stack.env(info))
    import boto3
    from openai import OpenAI

    from gradeflow.core import db
    from gradeflow.core.config import OpenAISettings, get_institution
    from gradeflow.grading import night as grading
    from gradeflow.grading import prepare
    from gradeflow.grading.context import Night

    settings = OpenAISettings(enqueued_token_cap=10**12, max_share_per_institution=1.0)
    # min_confidence 0.5: the emulator's grades of these answers (confidence 0.68) are released as they are,
    # so collect writes grades (the route to review is the same statement with fewer rows written).
    inst = replace(get_institution("northfield"), daily_token_budget=10**12, min_confidence=0.5)
    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    client = OpenAI(api_key=stack.EMULATOR_KEY, base_url=f"http://127.0.0.1:{info.openai_port}/v1", timeout=600)
    with stack.connect_as(info, stack.OWNER_ROLE, autocommit=True) as conn:  # the owner: it migrates and loads
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        db.migrate(conn)
        _load(conn, args.requests)
        prepare.order_submissions(conn, inst, DAY)
        night = Night(inst, DAY, conn, s3, client, settings)
        started = time.perf_counter()
        plan = prepare.build_batches(night)
        build = time.perf_counter() - started
        grading.submit_ready(night)
        jobs = [j["job_id"] for j in db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id})]
        for job_id in jobs:
            batch_id = grading.get_job(conn, inst, job_id)["provider_batch_id"]
            while client.batches.retrieve(batch_id).status not in grading.TERMINAL:
                time.sleep(0.5)
        started = time.perf_counter()
        reports = [grading.collect_job(night, j) for j in jobs]
        collect = time.perf_counter() - started
        ledger = grading.ledger(conn, inst, DAY)
    lines = sum(r.lines_ok + r.lines_failed for r in reports)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"build_batches: {plan.requests_queued:,} requests in {plan.jobs_written} jobs, "
          f"{plan.bytes_written / 1e6:.0f} MB JSONL: {build:.1f} s, {plan.requests_queued / build:,.0f} requests/s")
    print(f"collect_job:   {lines:,} result lines, {sum(r.answers_graded for r in reports):,} answers graded: "
          f"{collect:.1f} s, {lines / collect:,.0f} lines/s")
    print(f"ledger: estimated in {ledger['est_input_tokens']:,} / actual {ledger['input_tokens']:,}; "
          f"estimated out {ledger['est_output_tokens']:,} / actual {ledger['output_tokens']:,}")
    print(f"peak RSS of this process: {peak_mb:.0f} MB")
    stack.down(Path(info.state_dir))


if __name__ == "__main__":
    main()
