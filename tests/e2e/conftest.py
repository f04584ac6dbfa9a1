"""The Airflow child the e2e modules share (test_exam_day, test_signoff_airflow and test_trigger_api).

tests/e2e/signoff_child.py runs the demo's day, then the faculty sign-off scenarios, then (`--trigger-api`) triggers
every DAG through the REST API, in one process: one Airflow import, metadata migrate, in-process execution API, core
API app and Great Expectations import instead of two of each (~10 s of CPU). test_exam_day and test_trigger_api
declare `pytest.mark.runs_with("tests/e2e/test_signoff_airflow.py")`, so `make test` hands the three modules to one
worker as one unit (tests/conftest.py) and the child runs once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_api_child(embedded_stack, project_root, tmp_path_factory):
    """Run the child once: {"result": its RESULT document, "shot": the screenshot's path, "mails": (the mail sink's
    folder, the names of the mails in it before the child ran), "demo": (the demo's --output folder, the child's
    output up to the demo's end)}."""
    folder = Path(embedded_stack.mail_dir)
    folder.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in folder.glob("*.eml")}
    shot = (project_root / "docs" / "img" / "approval.png" if os.environ.get("GRADEFLOW_UPDATE_SCREENSHOTS") == "1"
            else tmp_path_factory.mktemp("screens") / "approval.png")
    child = project_root / "tests" / "e2e" / "signoff_child.py"
    demo_output = tmp_path_factory.mktemp("demo-output")
    cmd = [sys.executable, str(child), "--state-dir", str(embedded_stack.state_dir), "--screenshot", str(shot),
           "--trigger-api", "--demo-output", str(demo_output)]
    proc = subprocess.run(cmd, cwd=project_root, env=dict(os.environ), capture_output=True, text=True, timeout=1500)
    (tmp_path_factory.mktemp("signoff-child") / "child.log").write_text(proc.stdout + proc.stderr)  # TIMELINE lines
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-8000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    demo_log = proc.stdout[:proc.stdout.index("DEMO DONE")]  # the demo's own output (signoff_child.DEMO_DONE)
    (demo_output / "run.log").write_text(demo_log)
    return {"result": json.loads(line[len("RESULT "):]), "shot": shot, "mails": (folder, before),
            "demo": (demo_output, demo_log)}
