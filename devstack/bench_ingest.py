"""Benchmark: ingest throughput against the physical limit (raw COPY of the same rows).

    python -m devstack.bench_ingest [--rows 200000] [--case short_rows|big_rows|reviews] [--files N]

Cases: `short_rows` (default) as below; `big_rows`: a CSV of long free-text answers (about 10 KB each, so
--rows 30000 is about 300 MB, 60000 about 600 MB) through the full ingest, with the sweep's memory against
the chunk budget (`--files 2`: the same rows in two files, so the second is read and checked ahead, in a
worker thread, while the first loads); `reviews`: a reviewers' file of --rows rows naming a few review items
over and over, applied through the ingest sweep.

Memory (big_rows and reviews): what counts is the **growth** of this process's resident memory during the
sweep above its RSS just before it, against 2x the chunk budget (ingest.CHUNK_CHARS). "Before" is taken
after a warm-up sweep of a 20-row file of the same shape, so the interpreter, pyarrow (and the pages of its
compute kernels), psycopg and boto3 are loaded and used once; the big file is uploaded before it too. The
kernel's high-water mark (VmHWM) is reset just before the sweep (`echo 5 > /proc/self/clear_refs`), so the
peak is the sweep's own, not the upload's. Reported: RSS at start, before the warm-up and before the sweep,
the sweep's peak (absolute), the growth, the limit (2x the chunk budget) and whether it is met, and the Arrow
memory pools' high-water marks (the default one and the system one ingest reads with). MB here are MiB
(VmRSS kB / 1024). `--trace-memory` also samples RSS every 5 ms and prints the code running at each new
peak (where the memory goes).

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
    parser.add_argument("--case", choices=("short_rows", "big_rows", "reviews"), default="short_rows")
    parser.add_argument("--state-dir", type=Path, default=stack.PROJECT_ROOT / ".devstack-bench",
                        help="the embedded stack's folder (another one runs beside `make bench`)")
    parser.add_argument("--output", type=Path, default=stack.PROJECT_ROOT / "bench-output" / "bench.json",
                        help="the bench's figures (big_rows and reviews update their key in it)")
    parser.add_argument("--files", type=int, default=1,
                        help="big_rows: split the rows over this many files (the sweep reads each next file ahead)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="big_rows/reviews: sample RSS every 5 ms and print the code running at each new peak")
    args = parser.parse_args()
    if args.case != "short_rows":
        big_case(args)
        return
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


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _peak_rss_mb() <= _rss_mb() + 1


class _MemoryTrace:
    """Samples RSS every 5 ms in a thread; at each new peak (2 MB above the last) notes the gradeflow, pyarrow
    and psycopg frames the main thread is in, and the Arrow pool's bytes: where the sweep's memory goes."""

    def __init__(self) -> None:
        import threading

        self.main = threading.get_ident()
        self.peaks: list[tuple[float, float, float, str]] = []
        self.running = True
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self.base = _rss_mb()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        self.thread.join()

    def _sample(self) -> None:
        import sys
        import traceback

        import pyarrow as pa

        best = 0.0
        while self.running:
            rss = _rss_mb()
            if rss > best + 2:
                best = rss
                frame = sys._current_frames().get(self.main)
                names = [f"{Path(f.filename).name}:{f.name}:{f.lineno}" for f in traceback.extract_stack(frame)
                         if any(p in f.filename for p in ("gradeflow", "pyarrow", "psycopg", "botocore"))]
                self.peaks.append((time.perf_counter() - self.started, rss - self.base,
                                   pa.total_allocated_bytes() / 2**20, " > ".join(names[-4:])))
            time.sleep(0.005)

    def print(self) -> None:
        print("memory trace: seconds, RSS over the start of the sweep (MB), Arrow pool (MB), code running")
        for seconds, over, arrow, where in self.peaks:
            print(f"  {seconds:7.2f} s  {over:7.1f}  {arrow:7.1f}  {where}")


def _big_csv(path: Path, rows: int, answer_chars: int = 10_000, prefix: str = "") -> int:
    """A CSV of `rows` long answers written to disk (never whole in memory); returns its size in bytes."""
    words = ["mitochondria", "produce", "ATP", "through", "cellular", "respiration", "in", "the", "inner", "membrane"]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at"])
        for i in range(rows):
            text = " ".join(words[(i + k) % len(words)] for k in range(answer_chars // 8))[:answer_chars]
            writer.writerow([f"{prefix}sub-{i:07d}", f"{prefix}stu-{i:07d}", "bench", "q2", text,
                             f"{DAY}T10:{(i // 60) % 60:02d}:{i % 60:02d}-05:00"])
    return path.stat().st_size


def big_case(args) -> None:
    """big_rows or reviews: time and memory of one ingest sweep on the embedded stack (module docstring)."""
    rss_start = _rss_mb()
    info = stack.up(args.state_dir)
    os.environ.update(stack.env(info))
    import boto3
    import pyarrow as pa

    from gradeflow.core import db
    from gradeflow.core.config import get_institution
    from gradeflow.intake import ingest
    from gradeflow.intake.ingest import ingest_institution

    with stack.connect_as(info, stack.OWNER_ROLE, autocommit=True) as raw:
        raw.execute("DROP SCHEMA public CASCADE")
        raw.execute("CREATE SCHEMA public")
    stack.migrate(info)
    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    s3.put_object(Bucket=stack.BUCKET, Key=f"incoming/northfield/{DAY}/exams/bench.json", Body=json.dumps(EXAM))
    inst = get_institution("northfield")
    work = args.state_dir / "bench-data"
    work.mkdir(parents=True, exist_ok=True)
    with db.connect(institution=inst.id) as conn:
        ingest_institution(inst, conn, s3)  # the exam definition
        rss_warmup = _rss_mb()
        warm = work / "warm_up.csv"  # a small file of the same shape: libraries loaded and used once
        _big_csv(warm, 20, prefix="warm")
        s3.upload_file(str(warm), stack.BUCKET, f"incoming/northfield/{DAY}/submissions/warm_up.csv")
        warm.unlink()
        ingest_institution(inst, conn, s3)
        size = 0
        if args.case == "big_rows":
            for k in range(args.files):  # several files: each after the first is read ahead while one loads
                path = work / "big_rows.csv"
                name = "big_rows.csv" if args.files == 1 else f"big_rows-{k + 1}.csv"
                rows = args.rows // args.files + (k < args.rows % args.files)
                size += _big_csv(path, rows, prefix="" if args.files == 1 else f"f{k + 1}-")
                s3.upload_file(str(path), stack.BUCKET, f"incoming/northfield/{DAY}/submissions/{name}")
                path.unlink()
            key_rows = (f"{args.rows:,} rows of ~10 KB answers, {size / 1e6:.0f} MB CSV"
                        + (f" in {args.files} files" if args.files > 1 else ""))
        else:
            key_rows = _reviews_setup(conn, s3, inst, args.rows)
        reset = _reset_peak()
        before = _rss_mb()
        trace = _MemoryTrace() if args.trace_memory else None
        started = time.perf_counter()
        if trace:
            with trace:
                report = ingest_institution(inst, conn, s3)
        else:
            report = ingest_institution(inst, conn, s3)
        elapsed = time.perf_counter() - started
        peak = _peak_rss_mb()  # the sweep's own peak when the reset worked, else the process's
        after = _rss_mb()
    budget_mb = ingest.CHUNK_CHARS / 2**20
    limit = 2 * budget_mb
    growth = peak - before
    pools = {pool.backend_name: round(pool.max_memory() / 2**20, 1)  # ingest reads with the system pool
             for pool in (pa.default_memory_pool(), pa.system_memory_pool())}
    arrow_peak = max(pools.values())
    print(f"case {args.case}: {key_rows}")
    print(f"ingest sweep: {elapsed:.2f} s; {report.rows_loaded:,} loaded, {report.rows_rejected:,} rejected, "
          f"{report.files_rejected} file(s) rejected")
    print(f"RSS at start {rss_start:.0f} MB, before the warm-up sweep {rss_warmup:.0f} MB, before the sweep "
          f"{before:.0f} MB, after it {after:.0f} MB")
    print(f"peak RSS during the sweep (VmHWM{'' if reset else ', NOT reset: the whole process'}) {peak:.0f} MB: "
          f"growth {growth:.0f} MB against 2x the chunk budget = {limit:.0f} MB: "
          f"{'met' if growth <= limit else 'NOT met'}")
    print(f"chunk budget {ingest.CHUNK_ROWS:,} rows / {budget_mb:.0f} MiB of values; Arrow pools' high-water marks "
          + ", ".join(f"{name} {mb:.0f} MB" for name, mb in pools.items()))
    if trace:
        trace.print()
    stack.down(Path(info.state_dir))
    from devstack.bench import write_figures

    figures = {"what": key_rows, "rows": args.rows, "file_mb": round(size / 1e6, 1), "seconds": round(elapsed, 2),
               "rows_loaded": report.rows_loaded, "rows_rejected": report.rows_rejected,
               "files_rejected": report.files_rejected, "rss_start_mb": round(rss_start, 1),
               "rss_before_warmup_mb": round(rss_warmup, 1), "rss_before_mb": round(before, 1),
               "peak_rss_mb": round(peak, 1), "peak_is_the_sweeps": reset,
               "peak_over_before_mb": round(growth, 1), "growth_limit_mb": round(limit, 1),
               "growth_within_limit": growth <= limit, "arrow_pool_peak_mb": arrow_peak, "arrow_pools_peak_mb": pools,
               "chunk_rows": ingest.CHUNK_ROWS, "chunk_mib": round(budget_mb, 1),
               "load_avg_1m": round(os.getloadavg()[0], 2),
               "files": args.files, "command": f"python -m devstack.bench_ingest --case {args.case} --rows {args.rows}"
                                               + (f" --files {args.files}" if args.files > 1 else "")}
    name = f"ingest_{args.case}_{args.rows}" + (f"_{args.files}_files" if args.files > 1 else "")  # one key per size
    write_figures(args.output, {name: figures})
    print(f"wrote {name} into {args.output}")


def _reviews_setup(conn, s3, inst, rows: int) -> str:
    """Ten answers in review as ten items, and a reviewers' file of `rows` rows naming them over and over."""
    from gradeflow.lifecycle import to_review

    data = io.StringIO()
    writer = csv.writer(data)
    writer.writerow(["submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at"])
    for i in range(10):
        writer.writerow([f"r{i}", f"st{i}", "bench", "q2", f"answer {i}", f"{DAY}T10:00:00-05:00"])
    s3.put_object(Bucket=stack.BUCKET, Key=f"incoming/northfield/{DAY}/submissions/r.csv", Body=data.getvalue())
    from datetime import date

    from gradeflow.grading import prepare
    from gradeflow.grading.context import Night
    from gradeflow.intake.ingest import ingest_institution
    from gradeflow.review import packets

    day = date.fromisoformat(DAY)
    ingest_institution(inst, conn, s3)
    prepare.order_submissions(conn, inst, day)
    prepare.grade_by_rule(conn, inst, day)
    prepare.build_batches(Night(inst, day, conn, s3))
    cids = [r[0] for r in conn.execute("SELECT custom_id FROM llm_requests WHERE institution_id = %s",
                                       (inst.id,)).fetchall()]
    with conn.transaction():
        to_review(conn, inst, cids, "manual", "bench")
    packets.write_packet(conn, s3, inst, day)
    items = [r[0] for r in conn.execute("SELECT review_id FROM review_items WHERE institution_id = %s",
                                        (inst.id,)).fetchall()]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["review_id", "score", "reviewer", "comment"])
    for i in range(rows):
        writer.writerow([items[i % len(items)], (i % 3) / 2, f"r{i % 7}", ""])
    s3.put_object(Bucket=stack.BUCKET, Key=f"incoming/northfield/{DAY}/reviews/bench.csv", Body=out.getvalue())
    return f"reviewers' file of {rows:,} rows naming {len(items)} items over and over"


if __name__ == "__main__":
    main()
