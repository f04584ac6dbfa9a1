"""Faculty sign-off before students (issue 16, item 7), in process on the real stack: the student-facing export
holds each student's own results and nothing of the grading machinery; the report says why a day is not released
(or not to students yet) and shows each file's ingest timings; the sign-off's alerts reach the right people.
The approval itself, through Airflow's HITL API, is tests/e2e/test_signoff_airflow.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from gradeflow.airflow import alerts, tasks
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.release import publish, report, students

from .helpers import DAY, answers_for, keys
from .test_alert_routing import NORTH as NORTH_MAIL
from .test_alert_routing import PLATFORM, mailbox  # noqa: F401 - the fixture
from .test_pipeline import EXAM_DAY, GOOD, _grade, _load, _prepare

INST = get_institution("northfield")
FORBIDDEN = ("confidence", "model", "suggested", "review_reason", "pending_reason", "grader", "evidence",
             "grading_version")


def _context():
    run = SimpleNamespace(run_id="manual__signoff", logical_date=None, run_after=datetime.now(UTC), dag_id="x")
    return {"dag_run": run, "params": {"exam_day": DAY}}


def _released(conn, s3, emulator, openai_client) -> dict:
    """A day graded by rule, model and (refusals) waiting in review, released through the publish tasks."""
    emulator.faults(refusal_every=3)
    rows = []
    for i in range(6):
        rows += answers_for(f"s{i}", f"st{i}", GOOD if i % 2 else f"it makes ATP {i}", minute=i,
                            q1="B" if i % 3 else "A")
    rows += answers_for("s9", "st1", "energy", minute=30)  # st1 sat the exam twice: both submissions are theirs
    _load(conn, s3, rows)
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    gate = tasks.validate_grades("northfield", **_context())
    return tasks.publish_release("northfield", gate=gate, **_context())


def test_each_student_gets_only_their_own_results_and_no_grading_internals(conn, s3, emulator, openai_client):
    released = _released(conn, s3, emulator, openai_client)
    assert not students.exported(s3, INST, DAY, released["version"])
    out = tasks.export_for_students("northfield", released=released, **_context())
    assert out["students"] == 6 and out["folder"] == f"releases/northfield/{DAY}/students/v1"
    found = keys(s3, out["folder"] + "/")
    assert found == sorted([f"{out['folder']}/st{i}.json" for i in range(6)] + [f"{out['folder']}/_manifest.json"])
    db_rows = conn.execute("SELECT student_id, submission_id, question_id, status, score::float8 FROM "
                           "release_results WHERE version = 1").fetchall()
    for i in range(6):
        raw = s3.get_object(Bucket="gradeflow", Key=f"{out['folder']}/st{i}.json")["Body"].read().decode()
        doc = json.loads(raw)
        assert doc["student_id"] == f"st{i}" and doc["version"] == 1 and doc["exam_day"] == DAY
        mine = {(r[1], r[2]): (r[3], r[4]) for r in db_rows if r[0] == f"st{i}"}
        got = {(s["submission_id"], a["question_id"]): (a["status"], a["score"])
               for s in doc["submissions"] for a in s["answers"]}
        assert got == mine  # every answer of theirs, and no one else's
        assert {s["submission_id"] for s in doc["submissions"]} == ({"s1", "s9"} if i == 1 else {f"s{i}"})
        for sub in doc["submissions"]:
            assert set(sub) == set(students.STUDENT_SUBMISSION_FIELDS)
            assert all(set(a) == set(students.STUDENT_ANSWER_FIELDS) for a in sub["answers"])
            assert sub["total_score"] == sum(a["score"] or 0 for a in sub["answers"])
        assert not [w for w in FORBIDDEN if f'"{w}' in raw], raw
        others = [f'"st{j}"' for j in range(6) if j != i] + [f'"s{j}"' for j in range(6) if j != i]
        assert not [o for o in others if o in raw]
    statuses = {a["status"] for k in found if not k.endswith("_manifest.json")
                for s in json.loads(s3.get_object(Bucket="gradeflow", Key=k)["Body"].read())["submissions"]
                for a in s["answers"]}
    assert statuses == {"graded", "pending"}  # refused answers wait in review: pending, no reason given
    manifest = json.loads(s3.get_object(Bucket="gradeflow", Key=f"{out['folder']}/_manifest.json")["Body"].read())
    assert manifest["students"] == 6 and manifest["answers"] == len(db_rows) and manifest["approved_by"] is None
    assert students.exported(s3, INST, DAY, 1)
    (line,) = conn.execute("SELECT actor, details FROM audit_log WHERE action = 'students_exported'").fetchall()
    assert line[0] == "northfield__publish" and line[1]["students"] == 6
    page = report.render(report.gather(conn, INST, EXAM_DAY))
    assert "Released to the institution as v1" in page and "students have v1 since" in page


def test_the_report_says_why_a_day_is_not_released(conn, admin_conn, s3):
    page = report.render(report.gather(conn, INST, EXAM_DAY))
    assert "Not released: nothing to release" in page and "No file was ingested" in page
    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)  # the free-text answers are queued for the model: still grading
    data = report.gather(conn, INST, EXAM_DAY)
    assert data.release_status == {"state": "grading", "waiting": {"waiting for the model": 2}}
    assert "Not released: still grading" in report.render(data) and "waiting for the model 2" in report.render(data)
    # An answer with two outcomes: the gate fails and the report lists the failed expectations.
    admin_conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                       "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades "
                       "WHERE grader = 'rule' AND submission_id = 's1' AND question_id = 'q1'")
    assert not publish.validate(conn, INST, EXAM_DAY).success
    data = report.gather(conn, INST, EXAM_DAY)
    assert data.release_status["state"] == "gate_failed" and data.release_status["failures"]
    page = report.render(data)
    assert "Not released: the release gate failed" in page
    assert "answers.expect_column_values_to_be_in_set" in page or "expect_" in page


def test_the_report_shows_each_files_ingest_timings(conn, s3):
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    files = report.ingest_timings(conn, INST, EXAM_DAY)
    assert [f["file_name"] for f in files] == ["bio-101.json", "a.csv"]
    for f in files:
        assert f["received"] <= f["started"] <= f["loaded"]  # S3 arrival, load start, rows written
        assert 0 <= f["load_seconds"] < 60 and f["received_to_loaded_seconds"] >= f["load_seconds"]
    assert files[1]["rows_loaded"] == 4
    page = report.render(report.gather(conn, INST, EXAM_DAY))
    assert "<h2>Ingest timings</h2>" in page and 'id="plot-ingest"' in page and ">a.csv</td>" in page


def test_the_report_says_when_students_wait_for_the_faculty(conn, s3, emulator, openai_client):
    released = _released(conn, s3, emulator, openai_client)
    signoff = replace(INST, student_release="after_faculty_approval", faculty_approval_hours=3.0)
    with conn.transaction():
        db.audit(conn, "northfield__publish", "faculty_approval_requested", INST.id, EXAM_DAY,
                 {"version": released["version"]})
    later = replace(INST, student_release="at 09:00")
    status = report.gather(conn, later, EXAM_DAY).release_status
    assert status["students"] == "scheduled" and status["at"].isoformat() == "2026-11-24T09:00:00-05:00"
    status = report.gather(conn, signoff, EXAM_DAY).release_status
    assert status["state"] == "released" and status["students"] == "awaiting_approval"
    assert "awaiting faculty approval in the Airflow UI" in report.render(report.gather(conn, signoff, EXAM_DAY))
    with conn.transaction():
        db.audit(conn, "prof.meyer", "faculty_rejected", INST.id, EXAM_DAY, {"version": released["version"]})
    status = report.gather(conn, signoff, EXAM_DAY).release_status
    assert status["students"] == "rejected" and status["by"] == "prof.meyer"


def test_a_rejection_and_a_timeout_alert_the_institution_with_the_operators_in_copy(mailbox):  # noqa: F811
    from gradeflow.airflow.signoff import ApprovalTimedOut

    alerts.send(alerts.students_rejected_alert("northfield", DAY, 1, "prof.meyer", "manual__x"))
    (mail,) = mailbox()
    assert mail["To"] == f"{NORTH_MAIL}, {PLATFORM}" and mail["X-GradeFlow-Alert"] == "students_rejected"
    assert mail["Subject"] == f"[GradeFlow] northfield {DAY}: release v1 rejected for students by prof.meyer"
    try:
        raise ApprovalTimedOut("no faculty decision on northfield 2026-11-23 v1 within 12 h")
    except ApprovalTimedOut as exc:
        timed_out = exc
    ti = SimpleNamespace(task_id="ask_faculty_approval", try_number=1, log_url=None)
    dag = SimpleNamespace(dag_id="northfield__publish", tags=["gradeflow", "institution:northfield"])
    alert = alerts.failure_alert({"dag": dag, "ti": ti, "dag_run": _context()["dag_run"], "params": {"exam_day": DAY},
                                  "exception": timed_out}, "task")
    assert alert.kind == "approval_timed_out" and "nothing released to students" in alert.subject
    assert "clear ask_faculty_approval" in alert.body
    assert alerts.recipients("northfield", alert.kind) == [NORTH_MAIL, PLATFORM]


def test_no_deadline_alert_for_a_released_day_that_waits_for_the_sign_off(conn, s3, emulator, openai_client):
    publish_run = datetime(2026, 11, 24, 11, tzinfo=UTC)  # the 06:00 New York run for the 23rd
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    assert alerts._day_has_answers("northfield", publish_run) is True  # answers, nothing released: late
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    gate = tasks.validate_grades("northfield", **_context())
    tasks.publish_release("northfield", gate=gate, **_context())
    assert alerts._day_has_answers("northfield", publish_run) is False  # released; students may wait


@pytest.mark.parametrize("student_id", ["st/1", "a b", "ü-7"])
def test_any_student_id_is_one_safe_key_segment(student_id):
    key = students.student_key(INST, DAY, 2, student_id)
    assert key.startswith(f"releases/northfield/{DAY}/students/v2/") and key.count("/") == 5
