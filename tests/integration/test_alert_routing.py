"""Alerts for the right people, saying enough (issue 16): the operators get the platform's failures, institutions
theirs; every alert names institution, exam day, run id and the real cause; no deadline alert for an empty day;
the review-share alert names the reasons that fired. Mail goes through the SMTP provider to the stack's sink."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from gradeflow.airflow import alerts, tasks
from gradeflow.core.config import load_platform_alert_emails

from .helpers import DAY, answers_for
from .test_alerts import _new_mail, _text
from .test_pipeline import GOOD, _load, _prepare

PLATFORM = "gradeflow-oncall@platform.example.org"


@pytest.fixture
def mailbox(embedded_stack):
    from pathlib import Path

    folder = Path(embedded_stack.mail_dir)
    folder.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in folder.glob("*.eml")}
    return lambda timeout=10: _new_mail(folder, before, timeout)
NORTH = "exams-office@northfield.example.edu"


def _dag(dag_id: str):
    from airflow.sdk import DAG

    return DAG(dag_id, schedule=None, tags=["gradeflow", f"institution:{dag_id.split('__')[0]}"])


def _run(run_id: str, logical: datetime | None = None):
    return SimpleNamespace(run_id=run_id, logical_date=logical, run_after=logical or datetime.now(UTC))


def test_the_platform_list_is_read_from_the_institutions_file():
    assert PLATFORM in load_platform_alert_emails()


def test_a_platform_failure_goes_to_the_operators_and_names_day_run_and_the_file_that_raised(mailbox, tmp_path):
    from gradeflow.release import gate

    (tmp_path / "answers.json").write_text('{"expectations": [')  # an operator's broken expectations file
    try:
        gate.load_suite("answers", tmp_path)
    except ValueError as exc:
        raised = exc
    ti = SimpleNamespace(task_id="validate_grades", try_number=3, log_url=None)
    # The scheduled 06:00 New York publish run of 24 Nov works on the 23rd.
    context = {"dag": _dag("northfield__publish"), "ti": ti, "params": {"exam_day": None}, "exception": raised,
               "dag_run": _run("scheduled__2026-11-24T11:00:00+00:00", datetime(2026, 11, 24, 11, tzinfo=UTC))}
    alerts.FailureNotifier("task").notify(context)
    (mail,) = mailbox()
    assert mail["To"] == PLATFORM and mail["X-GradeFlow-Alert"] == "task_failed"
    assert mail["Subject"] == ("[GradeFlow] northfield 2026-11-23: task validate_grades of northfield__publish "
                               "failed (ValueError)")
    text = _text(mail)
    assert "institution northfield, exam day 2026-11-23" in text
    assert "run scheduled__2026-11-24T11:00:00+00:00" in text
    assert f"expectations suite {tmp_path / 'answers.json'} is not valid JSON" in text  # the data file
    assert "raised in" in text and "gate.py" in text  # the code file that raised
    assert "caused by JSONDecodeError" in text


def test_institutions_get_theirs_and_platform_failures_fall_back_to_them_when_no_operator_is_listed(monkeypatch):
    assert alerts.recipients("northfield", "task_failed") == [PLATFORM]
    assert alerts.recipients("northfield", "gate_failed") == [NORTH, PLATFORM]
    assert alerts.recipients("northfield", "review_share") == [NORTH]
    assert alerts.recipients("northfield", "deadline_missed") == [NORTH]
    monkeypatch.setattr("gradeflow.core.config.load_platform_alert_emails", lambda: ())
    assert alerts.recipients("northfield", "task_failed") == [NORTH]


def test_the_review_share_alert_names_the_reasons_that_fired_and_the_version():
    alert = alerts.review_share_alert("lakeshore", DAY, {"answers": 2252, "in_review": 2250}, 0.2,
                                      {"low_confidence": 2244, "refused": 6}, 1)
    assert "Reasons: low_confidence 2,244, refused 6." in alert.body and "release v1" in alert.body
    assert "over_budget" not in alert.body  # not a review reason: budget overflow is deferred, never reviewed


def _deadline_context(run_id: str, logical: str) -> dict:
    # What Airflow 3.3's scheduler hands the triggerer: DAGRunResponse as JSON (the run id is `dag_run_id`).
    return {"dag_run": json.loads(json.dumps({"dag_run_id": run_id, "dag_id": "northfield__publish",
                                              "logical_date": logical, "state": "running"}))}


def test_no_deadline_alert_for_a_day_without_answers(conn, mailbox):
    sent = asyncio.run(alerts.release_deadline_missed(
        "northfield", "08:00", _deadline_context("scheduled__2026-11-24T11:00:00+00:00", "2026-11-24T11:00:00Z")))
    assert sent is False and mailbox(1) == []


def test_the_deadline_alert_names_the_run_and_the_exam_day(conn, s3, mailbox):
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    conn.commit()
    sent = asyncio.run(alerts.release_deadline_missed(
        "northfield", "08:00", _deadline_context("scheduled__2026-11-24T11:00:00+00:00", "2026-11-24T11:00:00Z")))
    assert sent is True
    (mail,) = mailbox()
    assert mail["To"] == NORTH and mail["Subject"] == (
        f"[GradeFlow] northfield {DAY}: results not released by 08:00 local time")
    assert "publish run scheduled__2026-11-24T11:00:00+00:00" in _text(mail) and "run ?" not in _text(mail)


def test_a_failed_gate_is_not_retried_but_an_infrastructure_error_is(conn, admin_conn, s3):
    from airflow.sdk.exceptions import AirflowFailException

    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    admin_conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                       "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades "
                       "WHERE grader = 'rule' AND submission_id = 's1' AND question_id = 'q1'")
    context = {"dag_run": _run("manual__gate"), "params": {"exam_day": DAY}}
    with pytest.raises(AirflowFailException) as failed:  # Airflow fails it for good: no retry loop
        tasks.validate_grades("northfield", **context)
    assert alerts.failure_alert({**context, "exception": failed.value, "dag": _dag("northfield__publish"),
                                 "ti": SimpleNamespace(task_id="validate_grades")}, "task").kind == "gate_failed"


def test_rejected_files_mail_the_institution_their_reports_once_per_sweep(conn, s3, mailbox):
    from .helpers import csv_bytes, exam_bytes, keys, put

    put(s3, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    for name, student in (("a.csv", "st1"), ("b.csv", "st2")):
        rows = answers_for(f"s-{student}", student)
        rows[0] = {**rows[0], "question_id": "no-such-question"}
        put(s3, f"incoming/northfield/{DAY}/submissions/{name}", csv_bytes(rows))
    put(s3, f"incoming/northfield/{DAY}/submissions/c.csv", csv_bytes(answers_for("s-ok", "st3")))
    tasks.ingest_files("northfield", dag_run=_run("scheduled__ingest"))
    (mail,) = mailbox()  # one mail for the sweep, not one per file
    assert mail["To"] == NORTH and mail["X-GradeFlow-Alert"] == "file_rejected"
    assert mail["Subject"] == f"[GradeFlow] northfield {DAY}: 2 file(s) with rejected rows or refused whole"
    reports = keys(s3, f"rejects/northfield/{DAY}/")
    assert len(reports) == 2 and all(f"s3://gradeflow/{key}" in _text(mail) for key in reports)
    assert "ingest run scheduled__ingest" in _text(mail)
    # A sweep with nothing refused mails nobody.
    put(s3, f"incoming/northfield/{DAY}/submissions/d.csv", csv_bytes(answers_for("s-ok2", "st4")))
    tasks.ingest_files("northfield", dag_run=_run("scheduled__ingest2"))
    assert len(mailbox(1)) == 1  # still only the first sweep's mail
