"""The Airflow child of the e2e modules (tests/e2e/conftest.py): the demo's exam day (test_exam_day), then the faculty
sign-off through Airflow itself (test_signoff_airflow), then every DAG triggered through the REST API
(test_trigger_api), in one process on the embedded stack: one Airflow import, in-process execution API, core API app
and Great Expectations import for the three modules instead of two of each (~10 s of CPU).

First `devstack.demo` runs in this process exactly as `python -m devstack.demo --institutions northfield
--submissions 25 --approval-institution northfield --day 2026-11-23 --keep` would (its output is this process's
output up to the line `DEMO DONE`), on Airflow's demo metadata database. Then one exam day of northfield three days
later (set to `student_release: after_faculty_approval` in a copy of the demo's institutions file; the demo's day
is left as it is) runs ingest, prepare and grade with `dag.test()`; then its publish DAG runs three times, each
`dag.test()` in a thread while this process answers the pending approval through Airflow's HITL REST API (Airflow's
own FastAPI app, in process, on the same metadata database):

1. `timeout`: nobody answers; once the request's deadline passed, the scheduler's own AWAITING_INPUT timeout sweep
   (`SchedulerJobRunner.check_awaiting_input_timeouts`, what a running scheduler does every loop) resolves it;
2. `reject`: user prof.reject answers Reject;
3. `approve`: user prof.meyer answers Approve (with `--screenshot PATH`: first, a real `airflow api-server` serves the
   UI and headless Chromium saves the pending approval's page to PATH; the server is started in the background as soon
   as the metadata database is migrated, so it starts up while the day's DAGs run).

Then (`--trigger-api`) the DAGs of every institution of include/institutions.yaml are serialised and each is
triggered through the REST API (tests/e2e/trigger_api_child.py, for test_trigger_api).

Prints one `RESULT {json}` line: the DAGs the demo left in the metadata database (`demo_dags`, before the triggers
add the others), per scenario the run state, task states, the HITL detail the API showed, and what the API answered
(and `trigger_api`: each DAG's answer to its trigger). On stderr, a `TIMELINE <epoch> <phase> cpu=<seconds>` line as
each phase starts (tests/e2e/conftest.py keeps the child's output in its tmp folder).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devstack import demo, stack
from devstack.hitl import TASK, api_client, respond, wait_for_request

DEMO_DAY = date(2026, 11, 23)  # the demo's day (test_exam_day)
DAY = date(2026, 11, 26)  # the sign-off's day: its runs' logical dates are apart from the demo's
DAG_ID = "northfield__publish"
DEMO_DONE = "DEMO DONE"  # printed after the demo's output


def mark(phase: str) -> None:
    """A timeline line on stderr (not the RESULT line): wall clock and this process's CPU when `phase` starts."""
    cpu = os.times()
    print(f"TIMELINE {time.time():.3f} {phase} cpu={cpu.user + cpu.system:.2f}", file=sys.stderr, flush=True)


def institutions_file(folder: Path, hours: float) -> Path:
    """A copy of the demo's institutions file (northfield only) with northfield's approval deadline `hours`."""
    import yaml

    data = yaml.safe_load((folder / "demo-institutions.yaml").read_text())
    own = {e["id"]: e for e in yaml.safe_load((stack.PROJECT_ROOT / "include" / "institutions.yaml").read_text())
           ["institutions"]}
    for entry in data["institutions"]:
        if entry["id"] == "northfield":
            entry.pop("review_alert_share", None)  # the demo lowered it (its review-share alert): as configured
            if "review_alert_share" in own["northfield"]:
                entry["review_alert_share"] = own["northfield"]["review_alert_share"]
            entry.update(student_release="after_faculty_approval", faculty_approval_hours=hours)
    path = folder / f"institutions-{hours:g}h.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def pending(client, timeout: float = 300.0) -> dict:
    """The approval request once the task waits for it (GET /api/v2/dags/{dag_id}/dagRuns/~/hitlDetails), looked
    for every 0.1 s (devstack.hitl.wait_for_request: a cheap metadata query first, the API once something waits)."""
    return wait_for_request(client, DAG_ID, timeout=timeout)


def run_publish(logical_local: datetime, answer) -> dict:
    """dag.test() of the publish DAG (in the main thread: task timeouts use signals); a thread answers the approval
    (`answer(detail)`) once it waits."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(str(stack.PROJECT_ROOT / "dags")).get_dag(DAG_ID)
    dag.deadline = None  # as in devstack.demo: Airflow 3.3.2's dag.test() trips on deadline alerts
    out: dict = {}

    def respond_when_asked() -> None:
        try:
            out["detail"] = pending(api_client("prof.meyer"))
            mark("  request seen waiting")
            out["answer"] = answer(out["detail"])
            mark("  answered")
        except Exception as exc:  # reported in the result; the run then waits for its timeout
            out["answer"] = {"error": repr(exc)}

    responder = threading.Thread(target=respond_when_asked, daemon=True)
    responder.start()
    run = dag.test(logical_date=logical_local.astimezone(ZoneInfo("UTC")))
    mark("  dag.test returned")
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
        time.sleep(0.2)  # the deadline is ~1 s after the request: a sweep every 0.2 s finds it passed soon after
    return {"task_state_after_sweep": "awaiting_input"}


class UiServer:
    """A real `airflow api-server` (the UI) on this metadata database, for the screenshot. Started in the background
    as soon as the metadata database is migrated: it imports Airflow and builds its app (about 10 s of a core) while
    the day's DAGs run, instead of while the approval waits for it."""

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {**os.environ, **env, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
               "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}"}
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        # `--apps core`: the UI and the public API; the Task Execution API (for workers) is not part of the page.
        # `python -m airflow api-server ...` with the import-time heap frozen after each full collection, as in this
        # child (devstack.demo.freeze_after_full_collections): Airflow's own entry point, run by runpy.
        argv = ["airflow", "api-server", "--port", str(self.port), "--workers", "1", "--apps", "core"]
        code = ("import runpy, sys; from devstack.demo import freeze_after_full_collections as f; f(); "
                f"sys.argv = {argv!r}; runpy.run_module('airflow', run_name='__main__', alter_sys=True)")
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 180.0) -> bool:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """SIGKILL: a throwaway test server with nothing to save; a graceful stop (SIGTERM) took 5-6 s of a loaded
        machine (2-3 s of CPU) while the approval waited for it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
        self.proc.wait(timeout=30)
        self.log.close()


def screenshot(detail: dict, path: Path, server: UiServer | None) -> dict:
    """Headless Chromium saves the pending approval's page, served by the real api-server (UI) `server`."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or server is None:
        return {"skipped": "chromium not installed"}
    try:
        server.wait_healthy()
        mark("  api-server healthy")
        ti = detail["task_instance"]
        url = (f"http://127.0.0.1:{server.port}/dags/{DAG_ID}/runs/{ti['dag_run_id']}/tasks/{TASK}/required_actions")
        path.parent.mkdir(parents=True, exist_ok=True)
        profile = path.parent / ".chromium-profile"
        # 8 s of virtual time render the page as 30 s did (the same screenshot), with half the UI's polling requests
        # to the api-server (53 against 108): the page waits on its requests, which stop virtual time.
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1400,1000",
               "--virtual-time-budget=8000", f"--screenshot={path}", url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        mark("  chromium done")
        shutil.rmtree(profile, ignore_errors=True)
        return {"url": url, "saved": path.exists(), "chromium": done.returncode}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--trigger-api", action="store_true", help="then trigger every DAG (test_trigger_api)")
    parser.add_argument("--demo-output", type=Path, required=True, help="the demo's --output folder")
    args = parser.parse_args()
    demo.freeze_after_full_collections()
    info = stack.status(args.state_dir)
    mark("airflow import + db migrate")
    # The test's night is seconds long: retry waves 0.2 s apart and batches looked at every 0.05 s (the demo's own
    # defaults, 1 s and 0.5 s, are for a night a person watches).
    os.environ["GRADEFLOW_RETRY_BACKOFF_SECONDS"] = "0.2"
    os.environ["GRADEFLOW_BATCH_POLL_SECONDS"] = "0.05"
    demo.prepare_environment(info)  # the demo's metadata database (the demo migrates it again: nothing to do)
    # The demo's institutions file (the demo writes the same again), and the sign-off's copies of it.
    demo.demo_institutions(args.state_dir, "northfield", "northfield", ["northfield"])
    short, normal = institutions_file(args.state_dir, 0.0003), institutions_file(args.state_dir, 1)
    server = None
    if args.screenshot and (shutil.which("chromium") or shutil.which("chromium-browser")):
        # Started now, so that it starts up while the demo and the day's DAGs run.
        server = UiServer(args.screenshot.with_suffix(".api-server.log"), {"GRADEFLOW_INSTITUTIONS": str(normal)})
    try:
        mark("demo")
        code = demo.main(["--institutions", "northfield", "--submissions", "25", "--approval-institution",
                          "northfield", "--day", str(DEMO_DAY), "--state-dir", str(args.state_dir),
                          "--output", str(args.demo_output), "--keep"])
        print(f"{DEMO_DONE} {code}", flush=True)
        if code != 0:
            return code
        import airflow.settings

        airflow.settings.configure_orm()  # the demo let go of Airflow's connections as it ended
        return _scenarios(args, info, server, short, normal)
    finally:
        if server is not None and server.proc.poll() is None:
            server.stop()


def _scenarios(args: argparse.Namespace, info, server: UiServer | None, short: Path, normal: Path) -> int:
    demo_dags = sorted(d["dag_id"] for d in api_client("observer").get("/api/v2/dags", params={"limit": 100})
                       .json()["dags"])
    mark("reset the emulator")  # GradeFlow's data stays: the demo's day is test_exam_day's
    import httpx

    httpx.post(f"http://127.0.0.1:{info.openai_port}/_emulator/reset", timeout=10).raise_for_status()
    # About 1 s to decide, for the timeout: only the sweep in time_out() times the request out (dag.test never does),
    # and it runs once the request was seen waiting, so the request cannot be gone before the API shows it.
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(short)
    from gradeflow.core.config import get_institution

    inst = get_institution("northfield")
    mark("drop sample day")
    demo.drop_sample_day(info, DAY, 4, args.state_dir / "signoff-day", [inst])
    from airflow.dag_processing.dagbag import DagBag

    mark("dagbag")
    bag = DagBag(str(stack.PROJECT_ROOT / "dags"))
    stages = {}
    for stage, at, after in demo.SCHEDULE[:3]:
        mark(f"dag.test {stage}")
        local = datetime.combine(DAY + timedelta(days=after), at, ZoneInfo(inst.timezone))
        stages[stage] = str(bag.get_dag(f"northfield__{stage}").test(
            logical_date=local.astimezone(ZoneInfo("UTC"))).state)
    morning = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), ZoneInfo(inst.timezone))
    result = {"demo_dags": demo_dags, "stages": stages}
    mark("publish timeout")
    result["timeout"] = run_publish(morning.replace(hour=6), time_out)
    os.environ["GRADEFLOW_INSTITUTIONS"] = str(normal)
    mark("publish reject")
    result["reject"] = run_publish(morning.replace(hour=6, minute=5), answer_as("prof.reject", "Reject"))

    def approve(detail: dict) -> dict:
        shot = screenshot(detail, args.screenshot, server) if args.screenshot else None
        return {**answer_as("prof.meyer", "Approve")(detail), "screenshot": shot}

    mark("publish approve")
    result["approve"] = run_publish(morning.replace(hour=6, minute=10), approve)
    after = api_client("observer").get(f"/api/v2/dags/{DAG_ID}/dagRuns/{result['approve']['run_id']}/"
                                       f"taskInstances/{TASK}/-1/hitlDetails").json()
    result["approve"]["recorded"] = {k: after.get(k) for k in ("responded_by_user", "chosen_options", "responded_at")}
    if args.trigger_api:
        from trigger_api_child import trigger_every_dag  # beside this file

        from devstack.airflow_cli import airflow_cli

        mark("trigger api")
        os.environ["GRADEFLOW_INSTITUTIONS"] = str(stack.PROJECT_ROOT / "include" / "institutions.yaml")
        airflow_cli("dags", "reserialize")  # every institution's DAGs, not only the demo's
        result["trigger_api"] = trigger_every_dag()
    mark("end")
    print("RESULT " + json.dumps(result, default=str))
    sys.modules["airflow.settings"].dispose_orm()
    # Nothing is collected after this: the interpreter's shutdown otherwise runs full collections over the whole heap
    # while it tears the modules down (~10 s of wall time, 4-5 s of CPU, measured at load ~6).
    gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
