"""A night for three institutions on Airflow's distributed engine: the CeleryExecutor with a Redis broker and two
`airflow celery worker`s, beside a real scheduler, triggerer, DAG processor and API server (devstack.cluster), on
the embedded stack. Run by `make test-celery` (the `celery` marker; `make test` leaves it out).

The layout is docs/scale-out.md's answer to issue 15's residual (task code on a shared worker can read every
institution's connection): rheinwald has its own queue (`queue:` in the tenants' file) served only by worker-2,
whose environment holds rheinwald's database connection and no other; worker-1 serves the default queue with the
other two institutions' connections and never rheinwald's. Each worker has its own home and temp folder.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import pytest
import yaml

from devstack import cluster, stack

pytestmark = pytest.mark.celery
DAY = "2026-11-23"
INSTITUTIONS = ("lakeshore", "northfield", "rheinwald")
OWN_QUEUE = {"rheinwald": "gradeflow.rheinwald"}
WORKERS = [cluster.Worker("worker-1", queues=("default",), institutions=("lakeshore", "northfield")),
           cluster.Worker("worker-2", queues=("gradeflow.rheinwald",), institutions=("rheinwald",))]


def _tenants_file(project_root: Path, folder: Path, cap: int | None = None) -> Path:
    """The sample tenants with rheinwald on its own queue, small batches (several jobs each), and the cap.

    Students get their results at once (`student_release: auto`): the sample file has lakeshore wait for a faculty
    member's approval, which would hold its publish run in Airflow's Required actions for hours; the sign-off
    itself is tested in tests/e2e/test_signoff_airflow.py."""
    data = yaml.safe_load((project_root / "include" / "institutions.yaml").read_text())
    for entry in data["institutions"]:
        entry["max_requests_per_batch"] = 6
        entry["min_confidence"] = 0.0
        entry["student_release"] = "auto"
        entry.pop("faculty_approval_hours", None)
        if entry["id"] in OWN_QUEUE:
            entry["queue"] = OWN_QUEUE[entry["id"]]
    if cap is not None:
        data["openai"] = {"enqueued_token_cap": cap, "max_share_per_institution": 0.4}
    path = folder / "institutions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _clean(info) -> None:
    """Empty tables and bucket, as the `conn` and `s3` fixtures do for one test."""
    import boto3

    from gradeflow.core import db

    with stack.connect_as(info, stack.OWNER_ROLE, autocommit=True) as owner:
        tables = [r[0] for r in owner.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                              "AND tablename <> 'schema_migrations'")]
        owner.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        db.migrate(owner)
    s3 = boto3.client("s3", **stack.s3_client_kwargs(info))
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.BUCKET):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=stack.BUCKET, Key=item["Key"])


@pytest.fixture(scope="module")
def night(embedded_stack, project_root, tmp_path_factory):
    """Start the cluster, drop a small day for the three institutions, run their nights side by side; after every
    prepare, narrow the organisation's enqueued-token cap so that the jobs must wait for each other."""
    from datetime import date

    from devstack.demo import drop_sample_day
    from gradeflow.core.config import get_institution

    folder = tmp_path_factory.mktemp("celery-night")
    saved = os.environ.get("GRADEFLOW_INSTITUTIONS")
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(_tenants_file(project_root, folder))
    emulator = f"http://127.0.0.1:{embedded_stack.openai_port}/_emulator"
    httpx.post(f"{emulator}/reset", timeout=10).raise_for_status()
    _clean(embedded_stack)
    drop_sample_day(embedded_stack, date.fromisoformat(DAY), 4, folder / "day",
                    [get_institution(i) for i in INSTITUTIONS])
    narrowed: dict = {}

    def narrow_the_cap() -> None:
        """Room for two of the largest jobs at once, one per institution (share 0.4), in the file, the database's
        limits (migrate) and the emulator, which refuses a batch over it as the real API does."""
        with stack.connect_as(embedded_stack, stack.OWNER_ROLE, autocommit=True) as owner:
            tokens = [r[0] for r in owner.execute("SELECT est_input_tokens FROM batch_jobs ORDER BY job_id")]
        cap = int(max(tokens) * 2.5)
        _tenants_file(project_root, folder, cap)
        stack.migrate(embedded_stack)
        httpx.post(f"{emulator}/faults", json={"enqueued_token_cap": cap}, timeout=10).raise_for_status()
        narrowed.update(cap=cap, job_tokens=tokens)

    root = folder / "cluster"
    started = time.monotonic()
    try:
        with cluster.Cluster(embedded_stack, root, workers=WORKERS) as running:
            running.wait_dags([f"{i}__{s}" for i in INSTITUTIONS for s, _ in cluster.STAGE_CONF])
            runs = cluster.run_night(running, list(INSTITUTIONS), DAY, after_prepare=narrow_the_cap)
            tis = {r["dag_id"]: running.task_instances(r["dag_id"], r["run_id"]) for rs in runs.values() for r in rs}
            # As started (Celery's setproctitle overwrites /proc/<pid>/environ, so it cannot be read back there).
            environ = {w.name: running.worker_envs[w.name] for w in WORKERS}
        # Stopped before the checks: what the workers' homes and temp folders hold now, the night left behind
        # (while running, a worker keeps its own multiprocessing files there).
        yield {"runs": runs, "tis": tis, "root": root, "environ": environ, "stats": httpx.get(
            f"{emulator}/stats", timeout=10).json(), "seconds": time.monotonic() - started, **narrowed}
    finally:
        if saved is None:
            os.environ.pop("GRADEFLOW_INSTITUTIONS", None)
        else:
            os.environ["GRADEFLOW_INSTITUTIONS"] = saved
        stack.migrate(embedded_stack)  # the sample tenants' caps back in the database


def test_every_institution_ran_its_whole_night(night):
    assert {i: [(r["dag_id"].split("__")[1], r["state"]) for r in rs] for i, rs in night["runs"].items()} == {
        i: [(s, "success") for s, _ in cluster.STAGE_CONF] for i in INSTITUTIONS}, night["root"]


def test_tasks_ran_on_both_workers_each_institution_on_its_queue(night):
    ran = [(dag_id.split("__")[0], ti["queue"], ti["hostname"]) for dag_id, tis in night["tis"].items()
           for ti in tis if ti["state"] in ("success", "skipped") and ti["hostname"]]
    assert {host for _, _, host in ran} == {"worker-1", "worker-2"}
    for inst, queue, host in ran:
        expected = ("gradeflow.rheinwald", "worker-2") if inst == "rheinwald" else ("default", "worker-1")
        assert (queue, host) == expected, (inst, queue, host)


def test_a_dedicated_worker_holds_only_its_institutions_connection(night):
    db_conns = {name: sorted(k for k in env if k.startswith("AIRFLOW_CONN_GRADEFLOW_DB_"))
                for name, env in night["environ"].items()}
    assert db_conns == {"worker-1": ["AIRFLOW_CONN_GRADEFLOW_DB_LAKESHORE", "AIRFLOW_CONN_GRADEFLOW_DB_NORTHFIELD"],
                        "worker-2": ["AIRFLOW_CONN_GRADEFLOW_DB_RHEINWALD"]}


def test_the_grading_deferred_and_resumed_from_the_triggerer(night):
    """Each grade_night handed its wait to the triggerer (the trigger's own log, in the triggerer's home) and was
    resumed on a worker by the trigger's event (execute_complete's line, in that worker's home)."""
    root = night["root"]
    for inst in INSTITUTIONS:
        fired = list((root / "airflow" / "logs" / f"dag_id={inst}__grade").rglob("*.trigger.*.log"))
        assert fired and any("Trigger fired event" in p.read_text() for p in fired), inst
        resumed = [p for w in WORKERS for p in (root / w.name / "logs" / f"dag_id={inst}__grade").rglob("*.log")
                   if "collecting it and submitting" in p.read_text() or "Woke up" in p.read_text()]
        assert resumed, inst


def test_the_shared_token_cap_held_across_workers(night, embedded_stack):
    """The ledger: at no moment did the live reservations of all institutions add up to more than the cap, though
    the jobs together were more than it (they had to wait); the emulator refused nothing and saw no more."""
    cap, tokens = night["cap"], night["job_tokens"]
    assert len(tokens) >= 2 * len(INSTITUTIONS) and sum(tokens) > cap
    with stack.connect_as(embedded_stack, stack.OWNER_ROLE, autocommit=True) as owner:
        ledger = owner.execute("SELECT tenant, tokens, reserved_at, released_at FROM provider_enqueued").fetchall()
    assert {row[0] for row in ledger} == set(INSTITUTIONS) and all(row[3] is not None for row in ledger)
    events = sorted([(row[2], row[1]) for row in ledger] + [(row[3], -row[1]) for row in ledger],
                    key=lambda e: (e[0], e[1]))  # at one instant a release counts before a reservation
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    assert 0 < peak <= cap
    assert night["stats"]["token_limit_failures"] == 0 and night["stats"]["peak_enqueued_tokens"] <= cap


def test_nothing_relied_on_a_shared_local_disk(night, embedded_stack):
    """Each worker had its own home and temp folder; nothing but task logs was left in either, so every hand-off
    between tasks went through S3 and PostgreSQL; the releases are in S3."""
    import boto3

    homes = {name: Path(env["AIRFLOW_HOME"]) for name, env in night["environ"].items()}
    assert len(set(homes.values())) == 2 and len({env["TMPDIR"] for env in night["environ"].values()}) == 2
    for name, home in homes.items():
        left = [p.relative_to(home) for p in home.rglob("*") if p.is_file()]
        assert [str(p) for p in left if p.parts[0] != "logs" and str(p) != "airflow.cfg"] == [], name
        assert not any((home / "tmp").iterdir()), name
    s3 = boto3.client("s3", **stack.s3_client_kwargs(embedded_stack))
    for inst in INSTITUTIONS:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.BUCKET, Prefix=f"releases/{inst}/{DAY}/").get(
            "Contents", [])]
        assert any(re.search(r"results-v1\.parquet$", k) for k in keys), (inst, keys)
    print(json.dumps({"celery_night_seconds": round(night["seconds"], 1)}))
