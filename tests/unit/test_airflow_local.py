"""`make airflow` stops everything it started on Ctrl-C: Airflow runs in its own process group, which is
terminated as a whole (SIGTERM, then SIGKILL for what ignores it). Tested with a stand-in for
`airflow standalone` that starts grandchildren, one of which ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys
from devstack.airflow_local import run_group
pids = sys.argv[1]
script = (f"sleep 300 & echo $! >> {pids}; (trap '' TERM; sleep 300) & echo $! >> {pids}; "
          f"echo $$ >> {pids}; wait")
sys.exit(run_group(["sh", "-c", script], grace=0.3))
"""


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return True
    state = [line for line in status.read_text().splitlines() if line.startswith("State:")]
    return bool(state) and "Z" in state[0]  # a zombie has stopped; only its parent's reaping is left


def test_sigint_stops_the_whole_process_group(tmp_path, project_root):
    pids_file = tmp_path / "pids"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project_root / "plugins"), str(project_root)])}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(pids_file)], cwd=project_root, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(pids_file.read_text().split() if pids_file.exists() else []) < 3:
        time.sleep(0.05)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert len(pids) == 3 and not any(_gone(p) for p in pids)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to `make airflow`
    assert proc.wait(timeout=30) == 0  # a normal end for make (it showed `Error 241`)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.05)
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
