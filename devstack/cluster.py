"""A real Airflow deployment on the embedded stack: the four Airflow 3 components as separate processes and, for the
CeleryExecutor, a Redis broker and `airflow celery worker`s, each worker with its own home, temp folder, hostname,
queues and connections. Used by the Celery test (`make test-celery`) and the many-institution night bench
(`make bench-night`); docs/scale-out.md describes the layout.

    with Cluster(info, root, executor="CeleryExecutor",
                 workers=[Worker("worker-1"), Worker("worker-2", queues=("gradeflow.rheinwald",),
                                                     institutions=("rheinwald",))]) as cluster:
        run_id = cluster.trigger("northfield__prepare", {"exam_day": "2026-11-23"})
        cluster.wait("northfield__prepare", run_id)

Every process is started in its own process group, logs to `<root>/logs/<name>.log`, and is stopped (SIGTERM,
then SIGKILL) by `stop()`, which also drops the cluster's own Airflow metadata database. Time-table runs are off
(`[scheduler] use_job_schedule = False`): only the runs the caller triggers exist, whatever the clock says.
Redis is Debian's `redis-server` (apt-get install redis-server; .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from devstack import stack

DB_NAME = "airflow_cluster"  # the cluster's own Airflow metadata database (dropped and created on start)
HOSTNAME_ENV = "GRADEFLOW_WORKER_HOSTNAME"
DONE = {"success", "failed"}


def worker_hostname() -> str:
    """`[core] hostname_callable` of a local worker: its name, so task_instance.hostname tells the workers apart
    on one machine (in containers each worker has its own host name and Airflow's default is kept)."""
    return os.environ[HOSTNAME_ENV]


@dataclass(frozen=True)
class Worker:
    """One `airflow celery worker`: the queues it serves and the institutions whose connections it holds
    (None: all of them, a shared worker of the default queue)."""

    name: str
    queues: tuple[str, ...] = ("default",)
    institutions: tuple[str, ...] | None = None
    concurrency: int = 2


@dataclass
class Cluster:
    """Scheduler, triggerer, DAG processor, API server (+ Redis and Celery workers) on the embedded stack."""

    info: stack.StackInfo
    root: Path
    executor: str = "CeleryExecutor"
    workers: list[Worker] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    parallelism: int = 8
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    worker_envs: dict[str, dict[str, str]] = field(default_factory=dict)  # what each worker was started with
    api_port: int = 0
    redis_port: int = 0

    # ------------------------------------------------------------------ environment

    def _base_env(self) -> dict[str, str]:
        pw = stack._secrets(Path(self.info.state_dir))
        env = {**os.environ, **stack.env(self.info), **self.extra_env}
        meta = (f"{quote(stack.AIRFLOW_ROLE)}:{quote(pw[stack.AIRFLOW_ROLE], safe='')}@127.0.0.1:{self.info.pg_port}/"
                f"{DB_NAME}")
        env.update({
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{meta}",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # the REST API on 127.0.0.1 without a login
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",  # only triggered runs, whatever the clock says
            "AIRFLOW__CELERY__BROKER_URL": f"redis://:{self._redis_password}@127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{meta}",
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        })
        env.setdefault("GRADEFLOW_BATCH_POLL_SECONDS", "0.5")
        env.setdefault("GRADEFLOW_RETRY_BACKOFF_SECONDS", "1")
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    def worker_env(self, worker: Worker) -> dict[str, str]:
        """A worker's environment: its own home and temp folder, its hostname, only its institutions' connections."""
        home = self.root / worker.name
        env = self._base_env()
        env.update({"AIRFLOW_HOME": str(home), "TMPDIR": str(home / "tmp"), HOSTNAME_ENV: worker.name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.cluster.worker_hostname"})
        if worker.institutions is not None:
            from gradeflow.core import db

            keep = {f"AIRFLOW_CONN_{db.tenant_conn_id(i).upper()}" for i in worker.institutions}
            for key in [k for k in env if k.startswith("AIRFLOW_CONN_GRADEFLOW_DB_") and k not in keep]:
                del env[key]
        return env

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 240.0) -> None:
        """Fresh metadata database, then every component; returns when the API answers and the workers are up."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        self.api_port = stack._free_port()
        self.redis_port = stack._free_port()
        self._jwt_secret = secrets.token_urlsafe(32)
        self._redis_password = secrets.token_urlsafe(16)
        self._fresh_database()
        env = self._base_env()
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], env=env, check=True, capture_output=True, cwd=stack.PROJECT_ROOT)
        subprocess.run([*airflow, "pools", "set", "openai_batch_api", "4", "Batch API calls", "--include-deferred"],
                       env=env, check=True, capture_output=True, cwd=stack.PROJECT_ROOT)
        try:
            if self.executor == "CeleryExecutor":
                self._start_redis()
            self._spawn("api-server", [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.api_port),
                                       "--workers", "1"], env)
            for component in ("scheduler", "triggerer", "dag-processor"):
                self._spawn(component, [*airflow, component], env)
            for worker in self.workers:
                (self.root / worker.name / "tmp").mkdir(parents=True, exist_ok=True)
                self.worker_envs[worker.name] = self.worker_env(worker)
                self._spawn(worker.name, [*airflow, "celery", "worker", "--celery-hostname", worker.name,
                                          "--queues", ",".join(worker.queues), "--concurrency",
                                          str(worker.concurrency), "--skip-serve-logs", "--without-mingle",
                                          "--without-gossip"], self.worker_envs[worker.name])
            stack._wait_port(self.api_port, "Airflow API server", timeout=timeout)
            self._wait_workers(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every process group (workers first, so running tasks end), SIGKILL what is left."""
        for name in reversed(list(self.procs)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.procs[name].pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()
        with contextlib.suppress(Exception):
            self._drop_database()

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = open(self.root / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                            cwd=stack.PROJECT_ROOT, start_new_session=True)
        log.close()

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: `apt-get install redis-server` (Debian's package)")
        folder = self.root / "redis"
        folder.mkdir(exist_ok=True)
        conf = folder / "redis.conf"  # the password in a 0600 file, not on the command line
        conf.touch(mode=0o600)
        conf.write_text(f"bind 127.0.0.1\nport {self.redis_port}\nrequirepass {self._redis_password}\n"
                        f"dir {folder}\nsave \"\"\nappendonly no\ndaemonize no\nprotected-mode yes\n")
        self._spawn("redis", [binary, str(conf)], dict(os.environ))
        stack._wait_port(self.redis_port, "redis-server")

    def _wait_workers(self, timeout: float) -> None:
        """Until every worker answers a Celery ping (it consumes its queues from then on)."""
        if not self.workers:
            return
        code = ("import json; from airflow.providers.celery.executors.celery_executor import app; "
                "print(json.dumps(sorted(app.control.inspect(timeout=2).ping() or {})))")
        wanted = {f"celery@{w.name}" for w in self.workers}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): see {self.root / 'logs' / name}.log")
            done = subprocess.run([sys.executable, "-c", code], env=self._base_env(), capture_output=True, text=True,
                                  cwd=stack.PROJECT_ROOT, check=False)
            lines = done.stdout.strip().splitlines()
            if lines and wanted <= set(__import__("json").loads(lines[-1])):
                return
            time.sleep(2)
        raise RuntimeError(f"Celery workers {sorted(wanted)} did not answer within {timeout:.0f}s")

    def _fresh_database(self) -> None:
        from psycopg import sql

        self._drop_database()
        with stack._socket_connect(self.info, "postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DB_NAME),
                                                                      sql.Identifier(stack.AIRFLOW_ROLE)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(DB_NAME)))

    def _drop_database(self) -> None:
        from psycopg import sql

        with stack._socket_connect(self.info, "postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))

    # ------------------------------------------------------------------ the REST API

    def api(self, method: str, path: str, **kwargs):
        import httpx

        response = httpx.request(method, f"http://127.0.0.1:{self.api_port}/api/v2{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json()

    def wait_dags(self, dag_ids: list[str], timeout: float = 300.0) -> None:
        """Until the DAG processor has serialized every one of dag_ids."""
        deadline = time.monotonic() + timeout
        missing = set(dag_ids)
        while missing and time.monotonic() < deadline:
            found = {d["dag_id"] for d in self.api("GET", "/dags", params={"limit": 1000})["dags"]}
            missing -= found
            if missing:
                time.sleep(2)
        if missing:
            raise RuntimeError(f"DAGs not parsed within {timeout:.0f}s: {sorted(missing)[:5]} (dag-processor.log)")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """A manual run now (POST /dags/{id}/dagRuns, as the UI's trigger form); returns its run id."""
        body = {"logical_date": None, "conf": conf or {}}
        return self.api("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def wait(self, dag_id: str, run_id: str, timeout: float = 900.0) -> str:
        """The run's final state (success or failed); TimeoutError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]
            if state in DONE:
                return state
            time.sleep(1)
        raise TimeoutError(f"{dag_id} {run_id} not finished within {timeout:.0f}s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"]


STAGE_CONF = (("ingest", False), ("prepare", True), ("grade", True), ("publish", True))


def run_night(cluster: Cluster, institution_ids: list[str], day: str, timeout: float = 1200.0,
              after_prepare=None) -> dict[str, list[dict]]:
    """Each institution's night as a chain of triggered runs (ingest, prepare, grade, publish), institutions side
    by side; `after_prepare()` runs once every prepare is done (the test narrows the token cap there).

    Returns per institution the runs in order: dag_id, run_id, state, triggered (Unix time)."""
    import threading

    runs: dict[str, list[dict]] = {i: [] for i in institution_ids}
    errors: list[BaseException] = []
    prepared = threading.Barrier(len(institution_ids), action=after_prepare)

    def chain(inst_id: str) -> None:
        try:
            for stage, takes_day in STAGE_CONF:
                dag_id = f"{inst_id}__{stage}"
                triggered = time.time()
                run_id = cluster.trigger(dag_id, {"exam_day": day} if takes_day else {})
                state = cluster.wait(dag_id, run_id, timeout)
                runs[inst_id].append({"dag_id": dag_id, "run_id": run_id, "state": state, "triggered": triggered})
                if state != "success":
                    prepared.abort()  # the others stop waiting for this one's prepare
                    return
                if stage == "prepare":
                    prepared.wait(timeout)
        except BaseException as exc:  # reported to the caller
            errors.append(exc)
            prepared.abort()

    threads = [threading.Thread(target=chain, args=(i,), daemon=True) for i in institution_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout * 4)
    if errors:
        raise errors[0]
    return runs
