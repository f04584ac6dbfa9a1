"""`make airflow`: Airflow standalone (scheduler, triggerer, DAG processor, API server + UI) on the embedded stack.

Open http://localhost:8080; the admin password is printed by Airflow and kept in
`.devstack/airflow/simple_auth_manager_passwords.json.generated`. The sample institutions' DAGs
are created unpaused (see README, "Pause policy"), so they run on their schedules.

Ctrl-C (or SIGTERM) stops everything this command started, and exits 0: Airflow runs in its own process group,
which is sent SIGTERM (then SIGKILL after a grace period), and the embedded stack (PostgreSQL, S3,
Batch API emulator, mail sink) is stopped too unless it was already running before.

Worker counts fit a small machine (set in `devstack.stack.env`): one API server worker, four
LocalExecutor task slots, one DAG-processor parsing process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from devstack import stack

GRACE_SECONDS = 20.0


def run_group(cmd: list[str], grace: float = GRACE_SECONDS) -> int:
    """Run cmd in its own process group; on SIGINT/SIGTERM stop the whole group (SIGTERM, then SIGKILL)."""
    stopping = {"signal": None}

    def forward(signum, _frame):
        stopping["signal"] = signum

    # The handlers go in before the child starts: a Ctrl-C right after the start still stops the whole group
    # (with them installed after Popen, a signal in between killed this process and left the group running).
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(cmd, start_new_session=True)  # noqa: S603 - our interpreter and airflow
        while proc.poll() is None and stopping["signal"] is None:
            time.sleep(0.2)
        if stopping["signal"] is None:
            return _stop_group(proc, grace)  # Airflow ended by itself: its own exit status
        print(f"\nStopping Airflow (process group {proc.pid}) ...", flush=True)
        status = _stop_group(proc, grace)
        # A stop the user asked for is a normal end (make showed `Error 241`, standalone's status on SIGTERM).
        print(f"Airflow stopped (its exit status {status}).", flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_group(proc: subprocess.Popen, grace: float) -> int:
    """SIGTERM the process group, wait for every member, SIGKILL what is left after `grace` seconds."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the group leader when it has exited
        if not _group_alive(pgid):
            break
        time.sleep(0.2)
    if _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    return proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    """Start the stack, migrate Airflow's database, create the Batch API pool, run `airflow standalone`."""
    was_running = stack.status(stack.DEFAULT_STATE_DIR) is not None
    info = stack.up()
    try:
        os.environ.update(stack.env(info))
        os.environ.setdefault("GRADEFLOW_BATCH_POLL_SECONDS", "5")
        os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
        # standalone starts its components as `airflow ...` from PATH: use this virtual environment's.
        os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        airflow = [sys.executable, "-m", "airflow"]
        subprocess.run([*airflow, "db", "migrate"], check=True)
        subprocess.run([*airflow, "pools", "set", "openai_batch_api", "4", "Batch API calls",
                        "--include-deferred"], check=True)
        print(f"Embedded stack: PostgreSQL 127.0.0.1:{info.pg_port}, S3 http://127.0.0.1:{info.s3_port}, "
              f"Batch API http://127.0.0.1:{info.openai_port}/v1, mail sink 127.0.0.1:{info.smtp_port} "
              f"(alerts land in {info.mail_dir}). Drop a sample day with:\n"
              "  .venv/bin/python -m devstack.demo --drop-only --day 2026-11-23\n"
              "then trigger <institution>__prepare with exam_day 2026-11-23 from the UI. Ctrl-C stops everything.")
        return run_group([*airflow, "standalone"])
    finally:
        if not was_running:
            print("Stopping the embedded stack ...", flush=True)
            stack.down(stack.DEFAULT_STATE_DIR)


if __name__ == "__main__":
    sys.exit(main())
