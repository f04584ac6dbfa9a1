"""Bounded waits: timeouts on the night's connections, lock waits that name their blocker, orphans that end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.release import publish

from .helpers import DAY

NORTH = get_institution("northfield")
EXAM_DAY = date.fromisoformat(DAY)
RELEASE_LOCK = f"release:northfield:{DAY}"  # the advisory lock publish.release takes


@pytest.fixture
def superuser(embedded_stack):
    """Sees every backend's state in pg_stat_activity and may end any of them (the tests' observer)."""
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        yield su


def _held_by(superuser, pid: int) -> bool:
    return bool(superuser.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'"
                                   " AND granted", (pid,)).fetchone()[0])


def test_connections_carry_timeouts_keepalives_and_a_name(conn, monkeypatch):
    monkeypatch.setenv("GRADEFLOW_DB_STATEMENT_TIMEOUT", "2min")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "northfield__publish")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "publish_release")
    with db.connect(institution="northfield") as c:
        shown = {name: c.execute(f"SHOW {name}").fetchone()[0] for name, _, _ in db.SESSION_SETTINGS}
        name = c.execute("SHOW application_name").fetchone()[0]
        tenant = c.execute("SELECT current_setting('gradeflow.institution')").fetchone()[0]
    assert shown["statement_timeout"] == "2min" and shown["lock_timeout"] == "30s"
    assert shown["idle_in_transaction_session_timeout"] == "5min"
    assert shown["client_connection_check_interval"] == "5s" and shown["tcp_keepalives_idle"] == "60"
    assert name == "gradeflow/northfield/northfield__publish.publish_release" and tenant == "northfield"


def test_a_blocked_statement_fails_with_a_message_naming_the_blocker(conn, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "holder_task")
    holder = db.connect(institution="northfield")
    monkeypatch.setenv("GRADEFLOW_DB_LOCK_TIMEOUT", "1s")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "publish_release")
    waiter = db.connect(institution="northfield")
    try:
        holder.execute("BEGIN")
        # a publish stuck mid-way
        holder.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (RELEASE_LOCK,))
        started = time.monotonic()
        with pytest.raises(db.LockWaitTimeout) as caught:
            publish.release(waiter, NORTH, EXAM_DAY, validation_id=1)
        print(f"blocked release gave up after {time.monotonic() - started:.1f}s: {caught.value}")
        message = str(caught.value)
        pid = holder.info.backend_pid
        for part in (f"pid {pid}", "'gradeflow/northfield/holder_task'", "state 'idle in transaction'",
                     "holding for", "query started", "pg_advisory_xact_lock", "lock_timeout"):
            assert part in message, part
        assert isinstance(caught.value, psycopg.errors.LockNotAvailable)  # callers' handlers still match
    finally:
        holder.close()
        waiter.close()


def _orphan(script_env: dict) -> subprocess.Popen:
    """A task process that takes publish's lock and dies (kill -9) in the middle of a long statement."""
    code = textwrap.dedent(f"""
        import sys
        from gradeflow.core import db
        conn = db.connect(institution="northfield")
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", ({RELEASE_LOCK!r},))
        print(conn.info.backend_pid, flush=True)
        conn.execute("SELECT pg_sleep(600)")
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=script_env)


def _kill_mid_query(superuser, env: dict) -> int:
    proc = _orphan(env)
    pid = int(proc.stdout.readline())
    deadline = time.monotonic() + 10
    while not superuser.execute("SELECT state = 'active' FROM pg_stat_activity WHERE pid = %s",
                                 (pid,)).fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert _held_by(superuser, pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return pid


def test_a_killed_task_mid_query_does_not_stall_the_next_run(conn, superuser, monkeypatch):
    env = {**os.environ, "GRADEFLOW_DB_CLIENT_CHECK_INTERVAL": "250ms"}  # the control below waits 4x as long
    monkeypatch.setenv("GRADEFLOW_DB_LOCK_TIMEOUT", "20s")
    pid = _kill_mid_query(superuser, env)
    started = time.monotonic()
    with db.connect(institution="northfield") as nxt, nxt.transaction():
        # The next run takes the same lock: it gets it as soon as PostgreSQL notices the dead client.
        nxt.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (RELEASE_LOCK,))
    print(f"next run got the lock {time.monotonic() - started:.1f}s after the kill (orphan backend {pid})")
    # The orphan's transaction ended (the lock came free) as its backend began to exit; the backend leaves
    # pg_stat_activity a moment later (a race a loaded machine lost once: still listed right after the lock).
    deadline = time.monotonic() + 5
    while superuser.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
        assert time.monotonic() < deadline, f"the orphan backend {pid} is still there 5 s after its lock came free"
        time.sleep(0.02)


def test_without_the_client_check_the_orphan_keeps_its_lock_and_is_named(conn, superuser, monkeypatch):
    """The control for the test above: with the check off, the orphan sleeps on with the lock (as in the issue)."""
    env = {**os.environ, "GRADEFLOW_DB_CLIENT_CHECK_INTERVAL": "0"}
    monkeypatch.setenv("GRADEFLOW_DB_LOCK_TIMEOUT", "1s")  # 4x the check interval that frees the lock above
    pid = _kill_mid_query(superuser, env)
    try:
        with pytest.raises(db.LockWaitTimeout, match=rf"pid {pid} .*state 'active'.*pg_sleep"), \
                db.connect(institution="northfield") as nxt, nxt.transaction():
            nxt.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (RELEASE_LOCK,))
    finally:
        superuser.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_transaction_left_idle_is_ended_and_frees_its_lock(conn, superuser, monkeypatch):
    monkeypatch.setenv("GRADEFLOW_DB_IDLE_IN_TRANSACTION_TIMEOUT", "1s")
    forgetful = db.connect(institution="northfield")
    monkeypatch.setenv("GRADEFLOW_DB_LOCK_TIMEOUT", "20s")
    try:
        forgetful.execute("BEGIN")
        forgetful.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (RELEASE_LOCK,))
        with db.connect(institution="northfield") as nxt, nxt.transaction():
            nxt.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (RELEASE_LOCK,))
        assert not _held_by(superuser, forgetful.info.backend_pid)
    finally:
        forgetful.close()
