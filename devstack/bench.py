"""Benchmark: one institution's whole night, stage by stage, on the embedded stack.

    python -m devstack.bench [--answers 100000] [--first-day-answers N] [--profile] [--keep-stack]
    make bench                      # the same, 100,000 answers
    make bench ANSWERS=1000000      # the goals of issue 9

Generates a sample day of about N answers for one institution with the sample-day generator (mixed
question types, about a third free text, identical short answers, ~1% bad rows, one file sent twice),
on the embedded stack in `.devstack-bench/` with the Batch API emulator answering instantly, then runs
every stage through the functions the DAGs call (gradeflow.airflow.tasks, and publish.release / publish.export
for the release step). Each stage runs in a fresh process, so its peak memory (RSS high-water mark,
`VmHWM`) is its own; the time is of the stage's call only (not of imports).

Printed and written to `bench-output/bench.json`, per stage: rows, seconds, rows/s, peak RSS, and for
ingest the ratio to its ceiling: a raw `COPY` of the same rows into an unindexed table, measured in the
same run. Also:

* the first big day: a fresh institution whose tables were analysed while they were small (autovacuum
  off, so the planner keeps its stale statistics) loads and prepares a big day (`first_day:*` rows);
* DAG parsing of a generated 300-institution config (`devstack.bench_parse` when present, else the time
  of `import dags.institution_dags`).

No test asserts a time: tests/integration/test_bench.py runs this at a tiny size so it cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from devstack import stack

STATE_DIR = stack.PROJECT_ROOT / ".devstack-bench"
OUTPUT_DIR = stack.PROJECT_ROOT / "bench-output"
INSTITUTION = "bench"
FRESH_INSTITUTION = "bench_fresh"
DAY = date(2026, 11, 23)
FRESH_DAY = date(2026, 11, 24)
WARMUP_DAY = date(2026, 11, 20)
SEED = 7
# The night's stages, in order: (stage, what its rows count).
NIGHT = (("ingest", "answer rows read"), ("order", "submissions numbered"), ("rule", "answers graded by rule"),
         ("batches", "model requests written"), ("submit", "model requests submitted"),
         ("collect", "result lines"), ("validate", "answers checked"), ("release", "rows released"),
         ("export", "rows exported"))
# Stages whose time is the model's (the emulator's), not ours: reported, not counted in the night.
MODEL_STAGES = frozenset({"submit"})
PARSE_INSTITUTIONS = 300
STALE_TABLES = ("ingested_files", "exams", "questions", "submissions", "answers", "rejected_rows", "grades",
                "llm_requests", "review_queue", "batch_jobs")


# ---------------------------------------------------------------- configuration

def institutions_yaml(path: Path) -> Path:
    """The bench's tenants: budgets and batch sizes large enough that nothing is deferred."""
    import yaml

    entries = [{"id": inst, "name": f"Benchmark {inst}", "timezone": "America/New_York", "model": "gpt-4.1-mini",
                "daily_token_budget": 10_000_000_000} for inst in (INSTITUTION, FRESH_INSTITUTION)]
    path.parent.mkdir(parents=True, exist_ok=True)
    # An organisation cap this night cannot reach: submit and collect then time the whole night's jobs,
    # not the share of them the default cap (2M tokens, 30% per institution) admits at once.
    openai = {"enqueued_token_cap": 1_000_000_000_000, "max_share_per_institution": 1.0}
    path.write_text(yaml.safe_dump({"openai": openai, "institutions": entries}, sort_keys=False))
    return path


def _timezones() -> dict[str, str]:
    return {INSTITUTION: "America/New_York", FRESH_INSTITUTION: "America/New_York"}


def generate(out_dir: Path, institution: str, day: date, answers: int) -> dict:
    """Write (or reuse) a sample day of about `answers` answers for `institution`; return its manifest."""
    from devstack import sample_day

    per_exam = sample_day.submissions_for_answers(institution, day, answers, seed=SEED)
    marker = out_dir / f"manifest-{institution}-{day}-{per_exam}.json"
    # The files on disk are of the size generated last: reuse them only if that is the size asked for.
    current = out_dir / f"current-{institution}-{day}.txt"
    if marker.exists() and current.exists() and current.read_text() == marker.name:
        return json.loads(marker.read_text())
    shutil.rmtree(out_dir / "incoming" / institution / str(day), ignore_errors=True)
    manifest = sample_day.generate_day(out_dir, [institution], day, seed=SEED, submissions_per_exam=per_exam,
                                       timezones=_timezones())[institution]
    marker.write_text(json.dumps(manifest))
    current.write_text(marker.name)
    return manifest


# ---------------------------------------------------------------- stages (run in a child process)

def _inst(institution: str):
    from gradeflow.core.config import get_institution

    return get_institution(institution)


def _context(day: date) -> dict:
    return {"params": {"exam_day": str(day)}}


def _stage_ceiling(args) -> tuple[int, dict]:
    """The two physical ceilings of ingest, on the day's submission rows, in the same run:

    * raw: one CSV of the rows as they are, `COPY`ed into an unindexed temporary table (no WAL, no index);
    * indexed: the same rows in the real `answers` layout (institution, day, answer hash, source file and
      row; one row per submission and question), `COPY`ed into a logged table with the columns, defaults
      and indexes of `answers` (`LIKE answers INCLUDING ALL`: its primary key and both indexes; not its
      row-level security or reference triggers). Building those rows is not timed, only the COPY.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from gradeflow.core import db

    manifest = json.loads(Path(args.manifest).read_text())
    table = pa.concat_tables([_read_any(Path(args.data) / key) for key in manifest["files"]
                              if "/submissions/" in key and key != manifest["duplicate_file"]])
    buf = pa.BufferOutputStream()
    pacsv.write_csv(table, buf)
    data = buf.getvalue().to_pybytes()
    with db.connect(institution=args.institution) as conn:  # the worker role: a temporary (unlogged) table
        conn.execute("DROP TABLE IF EXISTS bench_copy_ceiling")
        conn.execute("CREATE TEMP TABLE bench_copy_ceiling (submission_id text, student_id text, exam_id text,"
                     " question_id text, answer text, submitted_at text)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY bench_copy_ceiling FROM STDIN WITH (FORMAT csv, HEADER true)") \
                as copy:
            copy.write(data)
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_copy_ceiling")
    size = len(data)
    del data
    indexed_rows, indexed_seconds = _indexed_ceiling(args, table)
    return table.num_rows, {"seconds": seconds, "bytes": size, "indexed_rows": indexed_rows,
                            "indexed_seconds": indexed_seconds}


def _indexed_ceiling(args, table) -> tuple[int, float]:
    """COPY of the day's rows in the answers layout into a logged twin of `answers` (its indexes): seconds."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    from gradeflow.intake.ingest import answer_hashes

    table = table.filter(pc.and_(pc.is_valid(table.column("submission_id")), pc.is_valid(table.column("question_id"))))
    table = table.append_column("n", pa.array(range(table.num_rows), pa.int64()))
    firsts = table.group_by(["submission_id", "question_id"], use_threads=False).aggregate([("n", "min")])
    table = table.take(pa.array(sorted(firsts.column("n_min").to_pylist()), pa.int64()))  # first of each, in order
    answers = pc.fill_null(table.column("answer"), "")
    rows = pa.table({
        "institution_id": pa.array([args.institution] * table.num_rows, pa.string()),
        "submission_id": table.column("submission_id"), "question_id": table.column("question_id"),
        "exam_id": pc.fill_null(table.column("exam_id"), ""),
        "exam_day": pa.array([args.day] * table.num_rows, pa.date32()),
        "answer_text": answers, "answer_sha256": answer_hashes(answers),
        "source_file_id": pa.array([1] * table.num_rows, pa.int64()), "source_row": table.column("n")})
    buf = pa.BufferOutputStream()
    pacsv.write_csv(rows, buf, write_options=pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    data = buf.getvalue()
    info = stack.status(STATE_DIR)
    with stack.connect_as(info, stack.OWNER_ROLE, autocommit=True) as conn:  # the owner: a logged table
        conn.execute("DROP TABLE IF EXISTS bench_copy_indexed")
        conn.execute("CREATE TABLE bench_copy_indexed (LIKE answers INCLUDING ALL)")
        try:
            started = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    f"COPY bench_copy_indexed ({', '.join(rows.column_names)}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(memoryview(data))
            seconds = time.perf_counter() - started
        finally:
            conn.execute("DROP TABLE bench_copy_indexed")
    return rows.num_rows, seconds


def _read_any(path: Path):
    import pyarrow as pa
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    cols = ["submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at"]
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    elif path.suffix == ".jsonl":
        schema = pa.schema([(c, pa.string()) for c in cols])
        table = pajson.read_json(path, parse_options=pajson.ParseOptions(explicit_schema=schema))
    else:
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(newlines_in_values=True),
                               convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in cols}))
    return table.select(cols).cast(pa.schema([(c, pa.string()) for c in cols]))


def _stage_ingest(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks

    report = tasks.ingest_files(args.institution, **_context(args.day))
    rows = report["rows_loaded"] + report["rows_rejected"] + report["rows_duplicate"]
    return rows, {k: report[k] for k in ("files_loaded", "files_duplicate", "rows_loaded", "rows_rejected",
                                         "rows_duplicate")}


def _stage_order(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks

    return tasks.order_submissions(args.institution, **_context(args.day))["ordered"], {}


def _stage_rule(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks

    return tasks.grade_by_rule(args.institution, **_context(args.day))["graded"], {}


def _stage_batches(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks

    plan = tasks.build_batches(args.institution, **_context(args.day))
    return plan["requests_queued"], {k: plan[k] for k in ("answers", "distinct_requests", "jobs_written",
                                                          "requests_deferred")}


def _stage_submit(args) -> tuple[int, dict]:
    """Submit the night's jobs under the cap (grading.submit_jobs, as grade_night's first step does)."""
    from gradeflow.airflow import tasks
    from gradeflow.core import db, storage
    from gradeflow.grading import night as grading
    from gradeflow.grading.context import Night

    inst = _inst(args.institution)
    with tasks.open_db(args.institution) as conn:
        job_ids = grading.submit_jobs(Night(inst, args.day, conn, storage.client(), grading.provider_for(inst)))
        requests = db.fetch_all(conn, "grade/open_jobs", {"inst": args.institution, "day": args.day})
    return sum(j["request_count"] for j in requests), {"jobs": len(job_ids)}


def _stage_collect(args) -> tuple[int, dict]:
    """Wait (untimed) for the emulator to finish every open job, then collect them all (grading.collect_job)."""
    import time

    from gradeflow.airflow import tasks
    from gradeflow.core import db
    from gradeflow.grading import night as grading
    from gradeflow.grading.context import Night

    inst = _inst(args.institution)
    provider = grading.provider_for(inst)
    with tasks.open_db(args.institution) as conn:
        night = Night(inst, args.day, conn, None, provider)
        jobs = [j["job_id"] for j in db.fetch_all(conn, "grade/open_jobs", {"inst": inst.id, "day": args.day})
                if j["provider_batch_id"]]
        for job_id in jobs:
            batch_id = grading.get_job(conn, inst, job_id)["provider_batch_id"]
            while provider.retrieve(batch_id).status not in grading.TERMINAL:
                time.sleep(0.2)
        reports = [grading.collect_job(night, j) for j in jobs]
    lines = sum(r.lines_ok + r.lines_failed + r.lines_missing for r in reports)
    return lines, {"jobs": len(reports), "answers_graded": sum(r.answers_graded for r in reports),
                   "answers_to_review": sum(r.answers_to_review for r in reports)}


def _stage_validate(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks
    from gradeflow.release import publish

    started = time.perf_counter()
    gate = tasks.validate_grades(args.institution, **_context(args.day))
    seconds = time.perf_counter() - started  # the gate's time, not the count below (the bench's own)
    with tasks.open_db(args.institution) as conn:
        answers = publish.day_counts(conn, _inst(args.institution), args.day)["answers"]
    Path(args.scratch).write_text(json.dumps(gate))
    return answers, {"validation_id": gate["validation_id"], "seconds": seconds}


def _stage_release(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks
    from gradeflow.release import publish

    gate = json.loads(Path(args.scratch).read_text())
    with tasks.open_db(args.institution) as conn:
        released = publish.release(conn, _inst(args.institution), args.day, gate["validation_id"])
    Path(args.scratch).write_text(json.dumps({**gate, "release_id": released["release_id"]}))
    return released["row_count"], {"version": released["version"]}


def _stage_export(args) -> tuple[int, dict]:
    from gradeflow.airflow import tasks
    from gradeflow.core import storage
    from gradeflow.release import publish

    gate = json.loads(Path(args.scratch).read_text())
    with tasks.open_db(args.institution) as conn:
        key = publish.export(conn, storage.client(), _inst(args.institution), args.day, gate["release_id"])
        rows = conn.execute("SELECT row_count FROM releases WHERE release_id = %s",
                            (gate["release_id"],)).fetchone()[0]
    return rows, {"export_key": key}


STAGES = {"ceiling": _stage_ceiling, "ingest": _stage_ingest, "order": _stage_order, "rule": _stage_rule,
          "batches": _stage_batches, "submit": _stage_submit, "collect": _stage_collect,
          "validate": _stage_validate, "release": _stage_release, "export": _stage_export}


def run_stage(args) -> None:
    """Child process: run one stage, print one JSON line."""
    global STATE_DIR
    STATE_DIR = args.state_dir.resolve()
    print("BENCH " + json.dumps(measure_stage(args), default=str))


def measure_stage(args) -> dict:
    """Warm up imports and the connection, run one stage; its rows, seconds and memory."""
    from gradeflow.airflow import tasks

    tasks.open_db(args.institution).close()  # imports and the schema check are not the stage's time
    _warm_imports(args.stage)
    rss_before = _rss_now_mb()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    rows, extra = STAGES[args.stage](args)
    seconds = extra.pop("seconds", None) or (time.perf_counter() - started)
    if profiler is not None:
        profiler.disable()
        _write_profile(profiler, args)
    peak = _peak_rss_mb()
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": round(peak, 1), "rss_before_mb": round(rss_before, 1),
            **extra}


def _warm_imports(stage: str) -> None:
    """Import what the stage will import, so the stage's time is its work (not compiling modules)."""
    import importlib

    from gradeflow.core import storage

    names = ["pandas", "pyarrow", "pyarrow.csv", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.json", "boto3",
             "psycopg.types.json", "adbc_driver_postgresql.dbapi", "gradeflow.intake.ingest",
             "gradeflow.grading.prepare", "gradeflow.release.publish"]
    if stage in ("submit", "collect"):
        names += ["openai", "gradeflow.grading.night"]
    if stage == "validate":
        names += ["great_expectations", "gradeflow.release.gate"]
    if stage == "export":  # the agreement report's statistics (scipy, through gradeflow.core.intervals)
        names += ["gradeflow.release.agreement", "gradeflow.release.audit"]
    for name in names:
        importlib.import_module(name)
    storage.client()


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM). Not getrusage's ru_maxrss: Linux carries that across
    fork and exec, so every stage would report at least the parent's size when it started the stage
    (the parent holds the generated day: about 1 GB at 1M answers)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _write_profile(profiler, args) -> None:
    import io
    import pstats

    OUTPUT_DIR.mkdir(exist_ok=True)
    name = args.label.replace(":", "-")
    profiler.dump_stats(OUTPUT_DIR / f"profile-{name}.prof")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
    (OUTPUT_DIR / f"profile-{name}.txt").write_text(text.getvalue())


# ---------------------------------------------------------------- the parent

class Bench:
    """Runs stages in child processes on the bench stack and keeps their figures."""

    def __init__(self, info: stack.StackInfo, env: dict[str, str], profile: bool, in_process: bool = False) -> None:
        self.info, self.env, self.profile, self.in_process = info, env, profile, in_process
        self.rows: list[dict] = []

    def stage(self, stage: str, institution: str, day: date, *, label: str | None = None,
              manifest: Path | None = None, data: Path | None = None) -> dict:
        label = label or stage
        cmd = [sys.executable, "-m", "devstack.bench", "--stage", stage, "--institution", institution,
               "--day", str(day), "--label", label, "--scratch", str(STATE_DIR / f"scratch-{institution}.json"),
               "--state-dir", str(STATE_DIR)]
        if manifest:
            cmd += ["--manifest", str(manifest), "--data", str(data)]
        if self.profile:
            cmd.append("--profile")
        if self.in_process:  # tests: one process (memory is then the process's high-water mark so far)
            result = {"stage": label, **measure_stage(main(cmd[3:], parse_only=True))}
        else:
            done = subprocess.run(cmd, env=self.env, cwd=stack.PROJECT_ROOT, capture_output=True, text=True,
                                  check=False)  # noqa: S603 - our own interpreter and module
            lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
            if done.returncode != 0 or not lines:
                sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
                raise RuntimeError(f"bench stage {label} failed (exit {done.returncode})")
            result = {"stage": label, **json.loads(lines[-1][6:])}
        result["rows_per_s"] = round(result["rows"] / result["seconds"]) if result["seconds"] else None
        result["load_avg_1m"] = round(os.getloadavg()[0], 2)  # a shared machine: every figure says how busy it was
        self.rows.append(result)
        print(_format_row(result), flush=True)
        return result

    def sql(self, *statements: str) -> None:
        with stack.connect_as(self.info, stack.OWNER_ROLE, autocommit=True) as conn:  # the owner: DDL, ANALYZE
            for statement in statements:
                conn.execute(statement)


def _format_row(r: dict) -> str:
    ratio = f"{r['ceiling_ratio']:.2f}x" if r.get("ceiling_ratio") else ""
    rate = f"{r['rows_per_s']:,}" if r.get("rows_per_s") else "-"
    return (f"{r['stage']:<20} {r['rows']:>10,} {r['seconds']:>9.2f} {rate:>11} {r['peak_rss_mb']:>9.0f} "
            f"{ratio:>8}")


HEADER = f"{'stage':<20} {'rows':>10} {'seconds':>9} {'rows/s':>11} {'peak MB':>9} {'ceiling':>8}"


def reset(info: stack.StackInfo, bench: Bench) -> None:
    """Empty database, bucket and emulator: every run starts from a fresh clone's state."""
    import boto3
    import httpx

    bench.sql("DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    stack.migrate(info)  # the owner's migrate step; the stages work as the worker role
    stack.empty_bucket(boto3.client("s3", **stack.s3_client_kwargs(info)))
    httpx.post(f"http://127.0.0.1:{info.openai_port}/_emulator/reset", timeout=30).raise_for_status()


def upload(info: stack.StackInfo, data_dir: Path, institution: str, day: date) -> None:
    """Drop one institution's day into S3 in arrival order (not timed: the institution does this)."""
    import boto3

    from devstack import sample_day

    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    for key in sample_day._upload_order(data_dir):
        if key.startswith(f"incoming/{institution}/{day}/"):
            s3.put_object(Bucket=stack.BUCKET, Key=key, Body=(data_dir / key).read_bytes())


def wait_for_batches(info: stack.StackInfo, env: dict[str, str], timeout: float = 3600) -> float:
    """Poll the emulator until every batch is finished; return the seconds waited (the model's time)."""
    import httpx

    started = time.perf_counter()
    base = f"http://127.0.0.1:{info.openai_port}/v1"
    headers = {"Authorization": f"Bearer {stack.EMULATOR_KEY}"}
    while time.perf_counter() - started < timeout:
        try:  # a loaded machine can keep the emulator from answering a poll in time: poll again
            batches = httpx.get(f"{base}/batches", params={"limit": 100}, headers=headers, timeout=300).json()["data"]
        except httpx.TimeoutException:
            continue
        if all(b["status"] in ("completed", "failed", "expired", "cancelled") for b in batches):
            return time.perf_counter() - started
        time.sleep(0.2)
    raise RuntimeError("batches did not finish in time")


def first_big_day(bench: Bench, info: stack.StackInfo, data_dir: Path, answers: int) -> None:
    """A fresh institution's first big day, with statistics from when its tables were small."""
    warm = generate(data_dir, FRESH_INSTITUTION, WARMUP_DAY, 100)
    upload(info, data_dir, FRESH_INSTITUTION, WARMUP_DAY)
    bench.stage("ingest", FRESH_INSTITUTION, WARMUP_DAY, label="first_day:warmup")
    bench.rows.pop()
    bench.sql("ANALYZE", *(f"ALTER TABLE {t} SET (autovacuum_enabled = false)" for t in STALE_TABLES))
    manifest = generate(data_dir, FRESH_INSTITUTION, FRESH_DAY, answers)
    upload(info, data_dir, FRESH_INSTITUTION, FRESH_DAY)
    try:
        for stage in ("ingest", "order", "rule"):
            bench.stage(stage, FRESH_INSTITUTION, FRESH_DAY, label=f"first_day:{stage}")
    finally:
        bench.sql(*(f"ALTER TABLE {t} RESET (autovacuum_enabled)" for t in STALE_TABLES), "ANALYZE")
    del warm, manifest


def night(bench: Bench, info: stack.StackInfo, data_dir: Path, answers: int, only: tuple[str, ...]) -> dict:
    """The main institution's whole night; returns its manifest."""
    manifest = generate(data_dir, INSTITUTION, DAY, answers)
    manifest_path = data_dir / "manifest-night.json"
    manifest_path.write_text(json.dumps(manifest))
    ceiling = bench.stage("ceiling", INSTITUTION, DAY, label="raw COPY (ceiling)", manifest=manifest_path,
                          data=data_dir)
    indexed = {"stage": "indexed COPY (ceiling)", "rows": ceiling.pop("indexed_rows"),
               "seconds": ceiling.pop("indexed_seconds"), "peak_rss_mb": ceiling["peak_rss_mb"],
               "load_avg_1m": ceiling["load_avg_1m"]}
    indexed["rows_per_s"] = round(indexed["rows"] / indexed["seconds"]) if indexed["seconds"] else None
    bench.rows.append(indexed)
    print(_format_row(indexed), flush=True)
    upload(info, data_dir, INSTITUTION, DAY)
    for stage, _ in NIGHT:
        if stage not in only:
            continue
        if stage == "collect":
            waited = wait_for_batches(info, bench.env)
            print(f"{'(model: emulator)':<20} {'':>10} {waited:>9.2f}", flush=True)
        result = bench.stage(stage, INSTITUTION, DAY)
        if stage == "ingest":
            result["ceiling_ratio"] = round(result["seconds"] / ceiling["seconds"], 2)
            result["indexed_ceiling_ratio"] = round(result["seconds"] / indexed["seconds"], 2)
            result["ceiling_rows_per_s"] = ceiling["rows_per_s"]
            result["indexed_ceiling_rows_per_s"] = indexed["rows_per_s"]
            print(f"{'':<20} ingest takes {result['ceiling_ratio']:.2f}x the raw COPY and "
                  f"{result['indexed_ceiling_ratio']:.2f}x the indexed COPY of the same rows", flush=True)
    return manifest


# The night's stage groups of issue 18, each with its goal (seconds at 1M answers on 2 cores).
STAGE_GROUPS = {"ingest": ("ingest",), "prepare (order + rule + batches)": ("order", "rule", "batches"),
                "collect": ("collect",), "publish (validate + release + export)": ("validate", "release", "export")}
GROUP_GOAL_SECONDS = 30.0
NIGHT_GOAL_SECONDS = 120.0
PEAK_GOAL_MB = 1024.0
INGEST_GOAL_RATIO = 1.5  # of the indexed COPY
PARSE_GOAL_SECONDS = 1.5


def stage_groups(rows: list[dict]) -> dict:
    """The night's stages summed by group (their seconds and the highest peak RSS of their stages)."""
    by = {r["stage"]: r for r in rows}
    out = {}
    for name, stages in STAGE_GROUPS.items():
        found = [by[s] for s in stages if s in by]
        if found:
            out[name] = {"stages": [r["stage"] for r in found], "seconds": round(sum(r["seconds"] for r in found), 2),
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in found),
                         "load_avg_1m": max(r.get("load_avg_1m", 0) for r in found)}
    return out


def ceilings(rows: list[dict]) -> dict:
    """Both ceilings of ingest and ingest's ratio to each (seconds of ingest / seconds of the COPY)."""
    by = {r["stage"]: r for r in rows}
    raw, indexed, ingest = by.get("raw COPY (ceiling)"), by.get("indexed COPY (ceiling)"), by.get("ingest")
    out = {}
    for name, row in (("raw_copy_unindexed", raw), ("copy_into_indexed_answers", indexed)):
        if row:
            out[name] = {k: row.get(k) for k in ("rows", "seconds", "rows_per_s", "load_avg_1m")}
    if ingest:
        out["ingest"] = {k: ingest.get(k) for k in ("rows", "seconds", "rows_per_s", "load_avg_1m")}
        out["ingest_over_raw"] = ingest.get("ceiling_ratio")
        out["ingest_over_indexed"] = ingest.get("indexed_ceiling_ratio")
    return out


def goals(summary: dict, groups: dict, rows: list[dict], parse: dict | None) -> dict:
    """Issue 18's goals against this run (they are stated for 1M answers: a smaller run only indicates)."""
    ingest = {r["stage"]: r for r in rows}.get("ingest") or {}
    out = {"answers": summary["answers"], "note": "goals are for 1,000,000 answers on a quiet 2-core machine",
           "night_seconds_without_model": {"goal": NIGHT_GOAL_SECONDS,
                                           "measured": summary["night_seconds_without_model"]},
           "peak_rss_mb": {"goal": PEAK_GOAL_MB, "measured": summary["night_peak_rss_mb"]},
           "ingest_over_indexed_copy": {"goal": INGEST_GOAL_RATIO, "measured": ingest.get("indexed_ceiling_ratio")}}
    for name, group in groups.items():
        if name != "ingest":
            out[name] = {"goal": GROUP_GOAL_SECONDS, "measured": group["seconds"]}
    if parse:
        out["dag_parsing_seconds"] = {"goal": PARSE_GOAL_SECONDS, "measured": parse["seconds"]}
    for value in out.values():
        if isinstance(value, dict) and value.get("measured") is not None:
            value["met"] = value["measured"] <= value["goal"]
    return out


def write_figures(path: Path, updates: dict) -> None:
    """Update bench.json's keys with `updates`, keeping every other key (devstack.bench_ingest and
    devstack.bench_night write their own into the same file); written whole to a temporary file, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figures = json.loads(path.read_text())
    except (OSError, ValueError):
        figures = {}
    if not isinstance(figures, dict):
        figures = {}
    figures.update(updates)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=2, default=str))
    tmp.replace(path)


def parse_time(env: dict[str, str], work: Path) -> dict:
    """DAG parsing of a generated config of 300 institutions (1,200 DAGs)."""
    if (stack.PROJECT_ROOT / "devstack" / "bench_parse.py").exists():  # the DAG processor's way (ops' bench)
        import statistics

        from devstack import bench_parse

        runs = []
        for alerts in (True, False):
            path = bench_parse.write_institutions(work / "institutions-300.yaml", PARSE_INSTITUTIONS, alerts=alerts)
            with _env(env):
                runs = [bench_parse.parse_once(path) for _ in range(3)]
            if not any(r["errors"] for r in runs):
                break
        return {"how": "devstack.bench_parse (DagBag on the DAG file, Airflow imported first; median of 3)",
                "institutions": PARSE_INSTITUTIONS, "dags": runs[0]["dags"],
                "seconds": statistics.median(r["seconds"] for r in runs),
                "cpu_seconds": statistics.median(r["cpu"] for r in runs), "load_avg_1m": round(os.getloadavg()[0], 2)}
    import yaml

    path = work / "institutions-300.yaml"
    path.write_text(yaml.safe_dump({"institutions": [
        {"id": f"inst_{n:03d}", "name": f"Institution {n}", "timezone": "Europe/Berlin"}
        for n in range(PARSE_INSTITUTIONS)]}))
    code = ("import time, sys; import airflow.sdk; t = time.perf_counter(); import dags.institution_dags as m; "
            "n = sum(1 for v in vars(m).values() if type(v).__name__ == 'DAG'); "
            "print(f'PARSE {time.perf_counter() - t:.3f} {n}')")
    seconds = []
    dags = 0
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], env={**env, "GRADEFLOW_INSTITUTIONS": str(path)},  # noqa: S603
                              cwd=stack.PROJECT_ROOT, capture_output=True, text=True, check=True)
        line = [x for x in done.stdout.splitlines() if x.startswith("PARSE ")][-1].split()
        seconds.append(float(line[1]))
        dags = int(line[2])
    return {"how": "import dags.institution_dags after airflow.sdk (best of 3)",
            "institutions": PARSE_INSTITUTIONS, "dags": dags, "seconds": min(seconds)}


class _env:
    """Apply an environment to this process for a block (bench_parse reads os.environ)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self.saved = env, {}

    def __enter__(self) -> None:
        self.saved = dict(os.environ)
        os.environ.update(self.env)

    def __exit__(self, *exc) -> None:
        os.environ.clear()
        os.environ.update(self.saved)


def main(argv: list[str] | None = None, parse_only: bool = False):
    """Run the whole night (and the first big day and DAG parsing); print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=100_000, help="answers in the night (default 100,000)")
    parser.add_argument("--first-day-answers", type=int, default=None,
                        help="answers of the first-big-day case (default: min(answers, 300,000); 0 skips it)")
    parser.add_argument("--skip-parse", action="store_true", help="do not time DAG parsing")
    parser.add_argument("--stages", default=",".join(stage for stage, _ in NIGHT),
                        help="the night's stages to run, in order (default: all), e.g. ingest to time loading only")
    parser.add_argument("--profile", action="store_true", help="cProfile each stage into bench-output/")
    parser.add_argument("--keep-stack", action="store_true", help="leave the bench stack running")
    parser.add_argument("--in-process", action="store_true",
                        help="run the stages in this process (quick, for tests; peak memory is cumulative)")
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR / "bench.json")
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    # Child-process arguments (one stage).
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--institution", help=argparse.SUPPRESS)
    parser.add_argument("--day", type=date.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if parse_only:
        return args
    if args.stage:
        run_stage(args)
        return 0
    return run(args)


def run(args) -> int:
    global STATE_DIR
    STATE_DIR = args.state_dir.resolve()
    first_day = min(args.answers, 300_000) if args.first_day_answers is None else args.first_day_answers
    started = time.perf_counter()
    # Before anything imports gradeflow.core.config (stack.up runs the migrate step): the bench's tenants.
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(institutions_yaml(STATE_DIR / "institutions.yaml"))
    sys.path[:0] = [str(stack.PROJECT_ROOT / "plugins")]
    info = stack.up(STATE_DIR, emulator_timing_scale=0.0)
    env = {**os.environ, **stack.env(info)}
    data_dir = STATE_DIR / "day"
    bench = Bench(info, env, args.profile, args.in_process)
    if args.in_process:
        os.environ.update(env)
        sys.path[:0] = [str(stack.PROJECT_ROOT / "plugins"), str(stack.PROJECT_ROOT)]
    try:
        reset(info, bench)
        print(HEADER, flush=True)
        if first_day:
            first_big_day(bench, info, data_dir, first_day)
        manifest = night(bench, info, data_dir, args.answers, tuple(args.stages.split(",")))
        parse = None if args.skip_parse else parse_time(env, STATE_DIR)
        if parse:
            print(f"DAG parsing, {parse.get('institutions')} institutions ({parse.get('dags')} DAGs): "
                  f"{parse['seconds']:.2f} s", flush=True)
    finally:
        if not args.keep_stack:
            stack.down(STATE_DIR)
    night_rows = [r for r in bench.rows if r["stage"] in dict(NIGHT) and r["stage"] not in MODEL_STAGES]
    if not night_rows:
        night_rows = [{"seconds": 0, "peak_rss_mb": 0}]
    summary = {"answers_requested": args.answers, "answers": manifest["answers"], "bad_rows": manifest["bad_rows"],
               "night_seconds_without_model": round(sum(r["seconds"] for r in night_rows), 2),
               "night_peak_rss_mb": max(r["peak_rss_mb"] for r in night_rows),
               "wall_seconds": round(time.perf_counter() - started, 1), "cpus": os.cpu_count(),
               "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
    groups = stage_groups(bench.rows)
    print(f"night without the model's time: {summary['night_seconds_without_model']:.1f} s; "
          f"peak RSS of any stage {summary['night_peak_rss_mb']:.0f} MB")
    for name, group in groups.items():
        print(f"  {name:<32} {group['seconds']:>8.2f} s  ({' + '.join(group['stages'])})")
    write_figures(args.output, {"summary": summary, "stages": bench.rows, "stage_groups": groups,
                                "ceilings": ceilings(bench.rows), "dag_parsing": parse,
                                "goals": goals(summary, groups, bench.rows, parse)})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
