"""Faculty sign-off through Airflow (issue 16, item 7): the publish DAG's ApprovalOperator waits in the
awaiting_input state; the decision comes through Airflow's HITL REST API (Airflow's own FastAPI app, in the child
process tests/e2e/signoff_child.py, on the embedded stack's metadata database), as the UI's Required actions page
sends it. Timeout and Reject give students nothing and alert the institution; Approve writes the students' copy,
and who approved is recorded by Airflow and in GradeFlow's audit_log. A screenshot of the pending approval in the
real Airflow UI (api-server + headless Chromium) is checked, and refreshes docs/img/approval.png when
GRADEFLOW_UPDATE_SCREENSHOTS=1."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date

import pytest

from gradeflow.core.config import get_institution

# An api-server, a scheduler and Chromium; test_trigger_api's triggers run in the same child (tests/e2e/conftest.py).
pytestmark = [pytest.mark.e2e, pytest.mark.heavy(seconds=100)]  # with test_exam_day and test_trigger_api: their unit
DAY = "2026-11-26"  # three days after the demo's day, which runs first in the same child (signoff_child.py)
NORTH_MAIL = "exams-office@northfield.example.edu"


@pytest.fixture(scope="module")
def mails(airflow_api_child):
    return airflow_api_child["mails"]  # the mail folder and the mails in it before the child ran


@pytest.fixture(scope="module")
def signoff(airflow_api_child):
    return airflow_api_child["result"], airflow_api_child["shot"]


def _audit(action: str):
    from gradeflow.airflow import tasks

    with tasks.open_db("northfield") as conn:
        return conn.execute("SELECT actor, details FROM audit_log WHERE action = %s AND exam_day = %s ORDER BY at",
                            (action, date.fromisoformat(DAY))).fetchall()


def _student_keys(embedded_stack):
    import boto3

    from devstack import stack

    s3 = boto3.client("s3", **stack.s3_client_kwargs(embedded_stack))
    found = s3.list_objects_v2(Bucket="gradeflow", Prefix=f"releases/northfield/{DAY}/students/").get("Contents", [])
    return s3, sorted(o["Key"] for o in found)


def _mail(folder, before, kind):
    from email import message_from_bytes, policy

    found = []
    for path in sorted(folder.glob("*.eml")):
        if path.name not in before:
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if message["X-GradeFlow-Alert"] == kind:
                found.append(message)
    return found


def test_the_approval_waits_in_airflow_with_the_report_linked(signoff):
    result, _ = signoff
    assert all("success" in s for s in result["stages"].values()), result["stages"]
    detail = result["approve"]["detail"]
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] is None
    assert detail["task_instance"]["state"] == "awaiting_input" and detail["response_received"] is False
    assert detail["subject"] == f"Northfield Community College: release exam day {DAY} (v1) to students?"
    assert f"s3://gradeflow/reports/northfield/{DAY}/report-v1.html" in detail["body"]
    assert "[open the report](http://127.0.0.1:" in detail["body"] and "Signature=" in detail["body"]  # presigned


def test_no_decision_in_time_fails_the_wait_gives_students_nothing_and_alerts(signoff, mails):
    result, _ = signoff
    timeout = result["timeout"]
    assert timeout["finished"] and timeout["state"] == "failed", timeout
    assert timeout["tasks"]["publish_release"] == "success"  # the institution's release is out
    assert timeout["tasks"]["ask_faculty_approval"] == "failed"
    assert timeout["tasks"]["export_for_students"] == "upstream_failed"
    assert timeout["tasks"]["write_report"] == "success"
    (line,) = _audit("faculty_approval_timed_out")
    assert line[0] == "airflow" and line[1]["version"] == 1
    (mail,) = _mail(*mails, "approval_timed_out")
    assert NORTH_MAIL in mail["To"] and "nothing released to students" in mail["Subject"]


def test_a_rejection_gives_students_nothing_and_alerts_with_who_rejected(signoff, mails):
    result, _ = signoff
    reject = result["reject"]
    assert reject["answer"]["status"] == 200, reject["answer"]
    assert reject["finished"] and reject["state"] == "success", reject  # a decision is not a failure
    assert reject["tasks"]["ask_faculty_approval"] == "success" and reject["tasks"]["export_for_students"] == "skipped"
    (line,) = _audit("faculty_rejected")
    assert line[0] == "prof.reject" and line[1]["user_name"] == "prof.reject"
    (mail,) = _mail(*mails, "students_rejected")
    assert NORTH_MAIL in mail["To"] and "rejected for students by prof.reject" in mail["Subject"]


def test_an_approval_writes_each_students_own_results_and_records_who_approved(signoff, embedded_stack):
    result, _ = signoff
    approve = result["approve"]
    assert approve["answer"]["status"] == 200, approve["answer"]
    assert approve["finished"] and approve["state"] == "success", approve
    assert approve["tasks"]["export_for_students"] == "success"
    assert approve["recorded"]["responded_by_user"]["name"] == "prof.meyer"  # Airflow's own record
    assert approve["recorded"]["chosen_options"] == ["Approve"]
    (line,) = _audit("faculty_approved")
    assert line[0] == "prof.meyer"
    (exported,) = _audit("students_exported")
    assert exported[1]["approved_by"] == "prof.meyer" and exported[1]["version"] == 1
    s3, found = _student_keys(embedded_stack)
    docs = [k for k in found if not k.endswith("_manifest.json")]
    assert found and all(k.startswith(f"releases/northfield/{DAY}/students/v1/") for k in found)
    assert len(docs) == exported[1]["students"] > 0
    for key in docs:
        doc = json.loads(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read())
        assert key.endswith(f"/{doc['student_id']}.json")
        assert all(set(a) == {"question_id", "question_type", "status", "score", "max_points", "feedback", "criteria"}
                   for s in doc["submissions"] for a in s["answers"])
    assert get_institution("northfield").student_release == "auto"  # only the child's copy asked for approval


def test_the_pending_approval_renders_in_the_airflow_ui(signoff):
    from PIL import Image

    result, shot = signoff
    taken = result["approve"]["answer"]["screenshot"]
    if taken.get("skipped"):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed: .ci/run installs it")
        pytest.skip(taken["skipped"])
    assert taken["saved"], taken
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, "the page is blank"  # the React UI rendered, not an empty or error page
    assert shutil.which("chromium") or shutil.which("chromium-browser")
