"""Benchmark: ingest throughput against the physical limit (raw COPY of the same rows).

    python -m devstack.bench_ingest [--rows 200000]

Starts (or reuses) the embedded stack in .devstack-bench/, writes one CSV of N answer rows for a
synthetic exam, and prints: raw `COPY` of the rows into an unindexed table (the ceiling), then
GradeFlow's full ingest of the same file from S3 (read, checksum, validate every row, COPY to
staging, upsert, archive), with rows per second and peak memory of this process.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import resource
import time
from pathlib import Path

from devstack import stack

DAY = "2026-11-23"


def _csv(rows: int) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at"])
    for i in range(rows):
        writer.writerow([f"sub-{i // 4:07d}", f"stu-{i // 4:07d}", "bench", f"q{i % 4 + 1}",
                         "B" if i % 4 == 0 else "a short free-text answer about ATP and respiration",
                         f"{DAY}T10:{(i // 60) % 60:02d}:{i % 60:02d}-05:00"])
    return buf.getvalue().encode()


EXAM = {"exam_id": "bench", "title": "bench", "questions": [
    {"question_id": "q1", "type": "multiple_choice", "max_points": 1, "answer_key": "B"},
    *({"question_id": f"q{n}", "type": "short_answer", "max_points": 3, "rubric": "r", "reference_answer": "ATP"}
      for n in (2, 3, 4))]}


def main() -> None:
    """Print raw COPY and full-ingest figures for the same rows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    info = stack.up(stack.PROJECT_ROOT / ".devstack-bench")
    os.environ.update(stack.env(info))
    import boto3

    from gradeflow.core import db
    from gradeflow.core.config import get_institution
    from gradeflow.intake.ingest import ingest_institution

    data = _csv(args.rows)
    with stack.connect_as(info, stack.OWNER_ROLE, autocommit=True) as raw:
        raw.execute("DROP SCHEMA public CASCADE")
        raw.execute("CREATE SCHEMA public")
        raw.execute("CREATE TABLE copy_ceiling (submission_id text, student_id text, exam_id text,"
                    " question_id text, answer text, submitted_at timestamptz)")
        started = time.perf_counter()
        with raw.cursor() as cur, cur.copy("COPY copy_ceiling FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            copy.write(data)
        ceiling = time.perf_counter() - started
    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    s3.put_object(Bucket=stack.BUCKET, Key=f"incoming/northfield/{DAY}/exams/bench.json", Body=json.dumps(EXAM))
    inst = get_institution("northfield")
    stack.migrate(info)  # as the owner; the ingest below runs as the night's worker role
    with db.connect(institution=inst.id) as conn:
        ingest_institution(inst, conn, s3)  # the exam definition
        s3.put_object(Bucket=stack.BUCKET, Key=f"incoming/northfield/{DAY}/submissions/bench.csv", Body=data)
        started = time.perf_counter()
        report = ingest_institution(inst, conn, s3)
        full = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = len(data) / 1e6
    print(f"rows: {args.rows:,}  file: {size_mb:.1f} MB CSV")
    print(f"raw COPY (ceiling):  {ceiling:6.2f} s  {args.rows / ceiling:>10,.0f} rows/s")
    print(f"GradeFlow ingest:    {full:6.2f} s  {report.rows_loaded / full:>10,.0f} rows/s  "
          f"({report.rows_loaded:,} loaded, {report.rows_rejected} rejected)  "
          f"= {ceiling / full:.0%} of the ceiling")
    print(f"peak RSS of this process: {peak_mb:.0f} MB")
    stack.down(Path(info.state_dir))


if __name__ == "__main__":
    main()
