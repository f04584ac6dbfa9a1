"""Child process for test_signoff_airflow: the faculty sign-off through Airflow itself, on the embedded stack.

One exam day of northfield (set to `student_release: after_faculty_approval` in a copy of the institutions file)
runs ingest, prepare and grade with `dag.test()`; then its publish DAG runs three times, each `dag.test()` in a
thread while this process answers the pending approval through Airflow's HITL REST API (Airflow's own FastAPI app,
in process, on the same metadata database):

1. `timeout`: nobody answers; once the request's deadline passed, the scheduler's own AWAITING_INPUT timeout sweep
   (`SchedulerJobRunner.check_awaiting_input_timeouts`, what a running scheduler does every loop) resolves it;
2. `reject`: user prof.reject answers Reject;
3. `approve`: user prof.meyer answers Approve (with `--screenshot PATH`: first, a real `airflow api-server` serves the
   UI and headless Chromium saves the pending approval's page to PATH).

With `--trigger-api`, the same process then triggers every DAG through the REST API (tests/e2e/trigger_api_child.py,
for test_trigger_api): one Airflow import, metadata migrate and app for both modules (tests/e2e/conftest.py).

Prints one `RESULT {json}` line: per scenario the run state, task states, the HITL detail the API showed, and what
the API answered (and `trigger_api`: each DAG's answer to its trigger).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devstack.hitl import TASK, api_client, respond, waiting

DAY = date(2026, 11, 23)
DAG_ID = "northfield__publish"


def institutions_file(folder: Path, hours: float) -> Path:
    import yaml

    from devstack import stack

    data = yaml.safe_load((stack.PROJECT_ROOT / "include" / "institutions.yaml").read_text())
    for entry in data["institutions"]:
        if entry["id"] == "northfield":
            entry.update(student_release="after_faculty_approval", faculty_approval_hours=hours)
    path = folder / f"institutions-{hours:g}h.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pending(client, timeout: float = 300.0) -> dict:
    """The approval request once the task waits for it (GET /api/v2/dags/{dag_id}/dagRuns/~/hitlDetails)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = waiting(client, DAG_ID)
        if found:
            return found[0]
        time.sleep(1)
    raise TimeoutError("no approval request appeared")


def run_publish(logical_local: datetime, answer) -> dict:
    """dag.test() of the publish DAG (in the main thread: task timeouts use signals); a thread answers the approval
    (`answer(detail)`) once it waits."""
    from airflow.dag_processing.dagbag import DagBag

    from devstack import stack

    dag = DagBag(str(stack.PROJECT_ROOT / "dags")).get_dag(DAG_ID)
    dag.deadline = None  # as in devstack.demo: Airflow 3.3.2's dag.test() trips on deadline alerts
    out: dict = {}

    def respond_when_asked() -> None:
        try:
            out["detail"] = pending(api_client("prof.meyer"))
            out["answer"] = answer(out["detail"])
        except Exception as exc:  # reported in the result; the run then waits for its timeout
            out["answer"] = {"error": repr(exc)}

    responder = threading.Thread(target=respond_when_asked, daemon=True)
    responder.start()
    run = dag.test(logical_date=logical_local.astimezone(ZoneInfo("UTC")))
    responder.join(timeout=60)
    out["finished"] = not responder.is_alive()
    out["state"] = str(run.state).replace("DagRunState.", "")
    out["run_id"] = run.run_id
    out["tasks"] = {ti.task_id: str(ti.state).replace("TaskInstanceState.", "") for ti in run.get_task_instances()}
    return out


def answer_as(user: str, option: str):
    return lambda detail: respond(api_client(user), detail, option)


def time_out(detail: dict) -> dict:
    """Wait past the request's deadline, then run the scheduler's timeout sweep once (as its loop would)."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    runner = SchedulerJobRunner(job=Job(), executors=[])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runner.check_awaiting_input_timeouts()
        state = api_client("observer").get(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{detail['task_instance']['dag_run_id']}/taskInstances/{TASK}").json()
        if state.get("state") != "awaiting_input":
            return {"task_state_after_sweep": state.get("state")}
        time.sleep(1)
    return {"task_state_after_sweep": "awaiting_input"}


def screenshot(detail: dict, path: Path) -> dict:
    """A real api-server (UI) on this metadata database; headless Chromium saves the pending approval's page."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        return {"skipped": "chromium not installed"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    log = open(path.with_suffix(".api-server.log"), "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--workers", "1"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import httpx

        for _ in range(180):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        ti = detail["task_instance"]
        url = (f"http://127.0.0.1:{port}/dags/{DAG_ID}/runs/{ti['dag_run_id']}/tasks/{TASK}/required_actions")
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = path.parent / ".chromium-profile"
        # 8 s of virtual time render the page as 30 s did (the same screenshot), with half the UI's polling requests
        # to the api-server (53 against 108): the page waits on its requests, which stop virtual time.
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1400,1000",
               "--virtual-time-budget=8000", f"--screenshot={path}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        shutil.rmtree(profile, ignore_errors=True)
        return {"url": url, "saved": path.exists(), "chromium": done.returncode}
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--trigger-api", action="store_true", help="then trigger every DAG (test_trigger_api)")
    args = parser.parse_args()
    from devstack import demo, stack

    info = stack.status(args.state_dir)
    from devstack.airflow_cli import airflow_cli

    airflow_cli("db", "migrate")  # in this process: it imports Airflow anyway (a child would import it again)
    demo.reset_data(info)
    os.environ["GRADEFLOW_RETRY_BACKOFF_SECONDS"] = "1"  # the night is minutes long, as in the demo
    import httpx

    httpx.post(f"http://127.0.0.1:{info.openai_port}/_emulator/reset", timeout=10).raise_for_status()
    short, normal = institutions_file(args.state_dir, 0.0003), institutions_file(args.state_dir, 1)
    # About 1 s to decide, for the timeout: only the sweep in time_out() times the request out (dag.test never does),
    # and it runs once the request was seen waiting, so the request cannot be gone before the API shows it.
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(short)
    from gradeflow.core.config import get_institution

    inst = get_institution("northfield")
    demo.drop_sample_day(info, DAY, 4, args.state_dir / "signoff-day", [inst])
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(stack.PROJECT_ROOT / "dags"))
    stages = {}
    for stage, at, after in demo.SCHEDULE[:3]:
        local = datetime.combine(DAY + timedelta(days=after), at, ZoneInfo(inst.timezone))
        stages[stage] = str(bag.get_dag(f"northfield__{stage}").test(
            logical_date=local.astimezone(ZoneInfo("UTC"))).state)
    morning = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), ZoneInfo(inst.timezone))
    result = {"stages": stages}
    result["timeout"] = run_publish(morning.replace(hour=6), time_out)
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(normal)
    result["reject"] = run_publish(morning.replace(hour=6, minute=5), answer_as("prof.reject", "Reject"))

    def approve(detail: dict) -> dict:
        shot = screenshot(detail, args.screenshot) if args.screenshot else None
        return {**answer_as("prof.meyer", "Approve")(detail), "screenshot": shot}

    result["approve"] = run_publish(morning.replace(hour=6, minute=10), approve)
    after = api_client("observer").get(f"/api/v2/dags/{DAG_ID}/dagRuns/{result['approve']['run_id']}/"
                                       f"taskInstances/{TASK}/-1/hitlDetails").json()
    result["approve"]["recorded"] = {k: after.get(k) for k in ("responded_by_user", "chosen_options", "responded_at")}
    if args.trigger_api:
        from trigger_api_child import trigger_every_dag  # beside this file

        result["trigger_api"] = trigger_every_dag()
    print("RESULT " + json.dumps(result, default=str))
    sys.modules["airflow.settings"].dispose_orm()
    return 0


if __name__ == "__main__":
    sys.exit(main())
