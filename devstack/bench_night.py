"""Benchmark: a compressed night for many institutions under Airflow's real scheduler, LocalExecutor then
CeleryExecutor (two workers), on the embedded stack (`make bench-night`).

For each executor: a fresh Airflow metadata database and a fresh cluster (devstack.cluster: scheduler, triggerer,
DAG processor, API server, and for Celery a Redis broker and two `airflow celery worker`s serving the default
queue), a small sample day dropped for every institution, then each institution's night as triggered runs
(ingest, prepare, grade, publish), all institutions side by side. From Airflow's own records (REST API):

- `ready_to_queued`: the scheduler's delay, from the moment a task could run (its run was queued, or its last
  upstream task ended) to the scheduler queueing it;
- `queued_to_start`: the executor's delay, from queued to running on a worker (Celery: through Redis);
- `ready_to_start`: both, the delay a task waits that is not its own work; `trigger_to_first_task`: from the
  trigger (POST dagRuns) to the run's first task starting;
- `total_seconds`: from the first trigger to the last run's end; `startup_seconds`: metadata migrate, components
  up, DAGs parsed;
- for Celery: tasks per worker, and hand-offs between workers (a task whose upstream ran on the other worker);
- `database_connections`: PostgreSQL's max_connections and the peak client connections seen during the night
  (sampled once a second from pg_stat_activity), in total and per database/login.

Written to `bench-output/bench-night.json` and merged into `bench-output/bench.json` under the key "night"
(the file's other keys are kept).

    python -m devstack.bench_night [--institutions 10] [--submissions 4] [--executors LocalExecutor,CeleryExecutor]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date, datetime
from pathlib import Path

from devstack import stack

STATE_DIR = stack.PROJECT_ROOT / ".devstack-bench-night"
OUTPUT_DIR = stack.PROJECT_ROOT / "bench-output"
EXECUTORS = ("LocalExecutor", "CeleryExecutor")


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _spread(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(ordered), "median": round(statistics.median(ordered), 2),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2), "max": round(ordered[-1], 2)}


def measure(cluster, runs: dict[str, list[dict]]) -> dict:
    """Delays and hand-offs from the API's records of every run and task instance of the night."""
    upstream: dict[str, dict[str, list[str]]] = {}
    delays = {"ready_to_queued": [], "queued_to_start": [], "ready_to_start": [], "trigger_to_first_task": []}
    per_worker: dict[str, int] = {}
    handoffs = edges = 0
    first_trigger, last_end = float("inf"), 0.0
    for chain in runs.values():
        previous_host = None
        for run in chain:
            dag_id = run["dag_id"]
            if dag_id not in upstream:
                ups: dict[str, list[str]] = {}
                for task in cluster.api("GET", f"/dags/{dag_id}/tasks")["tasks"]:
                    for down in task.get("downstream_task_ids") or []:
                        ups.setdefault(down, []).append(task["task_id"])
                upstream[dag_id] = ups
            detail = cluster.api("GET", f"/dags/{dag_id}/dagRuns/{run['run_id']}")
            queued_at = _ts(detail.get("queued_at")) or run["triggered"]
            first_trigger = min(first_trigger, run["triggered"])
            last_end = max(last_end, _ts(detail.get("end_date")) or 0.0)
            tis = {ti["task_id"]: ti for ti in cluster.task_instances(dag_id, run["run_id"])}
            starts = [_ts(ti["start_date"]) for ti in tis.values() if ti.get("start_date")]
            if starts:
                delays["trigger_to_first_task"].append(min(starts) - run["triggered"])
            for task_id, ti in tis.items():
                start, queued = _ts(ti.get("start_date")), _ts(ti.get("queued_when"))
                if start is None or ti["state"] not in ("success", "failed"):
                    continue
                ends = [_ts(tis[u]["end_date"]) for u in upstream[dag_id].get(task_id, []) if tis.get(u, {}).get(
                    "end_date")]
                ready = max(ends) if ends else queued_at
                delays["ready_to_start"].append(start - ready)
                # A deferred task is queued again when its trigger fires: its queued_when is then after its first
                # start, and says nothing of the first queueing; it counts in ready_to_start only.
                if queued is not None and queued <= start:
                    delays["ready_to_queued"].append(queued - ready)
                    delays["queued_to_start"].append(start - queued)
                host = ti.get("hostname") or "?"
                per_worker[host] = per_worker.get(host, 0) + 1
                parents = [tis[u].get("hostname") for u in upstream[dag_id].get(task_id, []) if u in tis]
                if not parents and previous_host:  # the stage's first task follows the previous stage's last
                    parents = [previous_host]
                edges += bool(parents)
                handoffs += bool(parents) and any(p and p != host for p in parents)
            ended = [ti for ti in tis.values() if ti.get("end_date")]
            if ended:
                previous_host = max(ended, key=lambda t: _ts(t["end_date"])).get("hostname")
    return {"total_seconds": round(last_end - first_trigger, 1),
            **{name: _spread(values) for name, values in delays.items()},
            "tasks_per_host": dict(sorted(per_worker.items())),
            "handoffs_between_hosts": handoffs, "dependencies": edges}


class ConnectionSampler:
    """Samples pg_stat_activity once a second while the night runs: the peak number of client connections in
    total and per (database, login), for the connection budget in docs/scale-out.md."""

    def __init__(self, info) -> None:
        import threading

        self.info, self.stop_event = info, threading.Event()
        self.peak_total = 0
        self.peak_by: dict[str, int] = {}
        self.max_connections = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)

    def _loop(self) -> None:
        with stack._socket_connect(self.info, "postgres") as conn:
            self.max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
            while not self.stop_event.wait(1.0):
                rows = conn.execute("SELECT datname, usename, count(*) FROM pg_stat_activity WHERE backend_type = "
                                    "'client backend' AND pid <> pg_backend_pid() GROUP BY 1, 2").fetchall()
                self.peak_total = max(self.peak_total, sum(r[2] for r in rows))
                for database, login, count in rows:
                    key = f"{database}/{login}"
                    self.peak_by[key] = max(self.peak_by.get(key, 0), count)

    def result(self) -> dict:
        """Logins of the institutions are summed into one entry (gradeflow/gradeflow_worker_*)."""
        tenants = sum(v for k, v in self.peak_by.items() if k.startswith("gradeflow/gradeflow_worker_"))
        by = {k: v for k, v in self.peak_by.items() if not k.startswith("gradeflow/gradeflow_worker_")}
        return {"max_connections": self.max_connections, "peak_client_connections": self.peak_total,
                "peak_by_database_login": dict(sorted(by.items())),
                "peak_tenant_logins_summed": tenants,
                "tenant_logins_seen": sum(1 for k in self.peak_by if k.startswith("gradeflow/gradeflow_worker_"))}


def night_once(info, executor: str, ids: list[str], day: date, submissions: int) -> dict:
    """One executor's night on a clean GradeFlow database and bucket and a fresh Airflow deployment."""
    from devstack import cluster, demo
    from gradeflow.core.config import get_institution

    demo.reset_data(info)
    demo.drop_sample_day(info, day, submissions, Path(info.state_dir) / "day", [get_institution(i) for i in ids])
    workers = [cluster.Worker(f"worker-{n}") for n in (1, 2)] if executor == "CeleryExecutor" else []
    started = time.monotonic()
    with cluster.Cluster(info, Path(info.state_dir) / f"cluster-{executor}", executor=executor,
                         workers=workers) as running:
        running.wait_dags([f"{i}__{s}" for i in ids for s, _ in cluster.STAGE_CONF])
        startup = time.monotonic() - started
        with ConnectionSampler(info) as sampler:
            runs = cluster.run_night(running, ids, str(day))
        failed = [r["dag_id"] for chain in runs.values() for r in chain if r["state"] != "success"]
        result = {"executor": executor, "workers": [w.name for w in workers],
                  "parallelism": running.parallelism, "startup_seconds": round(startup, 1),
                  "runs": sum(len(c) for c in runs.values()), "failed_runs": failed, **measure(running, runs),
                  "database_connections": sampler.result()}
    return result


def merge(output: Path, night: dict) -> None:
    """Write the night into bench.json under "night", keeping whatever else the file holds."""
    output.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(output.read_text()) if output.exists() else {}
    data["night"] = night
    output.write_text(json.dumps(data, indent=2, default=str) + "\n")
    (output.parent / "bench-night.json").write_text(json.dumps(night, indent=2, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--institutions", type=int, default=10)
    parser.add_argument("--submissions", type=int, default=4, help="submissions per exam (at least 2)")
    parser.add_argument("--day", type=date.fromisoformat, default=date(2026, 11, 23))
    parser.add_argument("--executors", default=",".join(EXECUTORS))
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR)
    parser.add_argument("--output", type=Path, default=OUTPUT_DIR / "bench.json")
    args = parser.parse_args(argv)
    from devstack.bench_parse import write_institutions

    state = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    tenants = write_institutions(state / "institutions.yaml", args.institutions)
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(tenants)
    if str(stack.PROJECT_ROOT / "plugins") not in sys.path:
        sys.path.insert(0, str(stack.PROJECT_ROOT / "plugins"))
    from gradeflow.core.config import load_institutions

    insts = load_institutions()
    ids = [i.id for i in insts]
    stack.down(state)
    info = stack.up(state, emulator_timing_scale=0.02)
    results = []
    try:
        os.environ.update(stack.env(info))
        for executor in args.executors.split(","):
            print(f"night for {len(ids)} institutions under {executor} ...", flush=True)
            results.append(night_once(info, executor, ids, args.day, args.submissions))
            print(json.dumps(results[-1], indent=2), flush=True)
    finally:
        stack.down(state)
    night = {"institutions": len(ids), "submissions_per_exam": args.submissions, "cores": os.cpu_count(),
             "command": "python -m devstack.bench_night " + " ".join(argv if argv is not None else sys.argv[1:]),
             "executors": {r["executor"]: r for r in results}}
    merge(args.output, night)
    print(f"\n{'executor':<15} {'total s':>8} {'ready->queued med/p95':>22} {'queued->start med/p95':>22} "
          f"{'trigger->1st task med':>22}")
    for r in results:
        print(f"{r['executor']:<15} {r['total_seconds']:>8} "
              f"{r['ready_to_queued'].get('median')!s:>10}/{r['ready_to_queued'].get('p95')!s:<11} "
              f"{r['queued_to_start'].get('median')!s:>10}/{r['queued_to_start'].get('p95')!s:<11} "
              f"{r['trigger_to_first_task'].get('median')!s:>22}")
    print(f"Wrote {args.output} (key 'night') and {args.output.parent / 'bench-night.json'}")
    return 0 if all(not r["failed_runs"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
