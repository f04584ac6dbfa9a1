"""Alerts that reach people, empty days and paused stages, on the real embedded stack.

Mail goes through Airflow's SMTP provider (SmtpNotifier, connection gradeflow_smtp) to the stack's
mail sink, and is read back from the .eml file the sink wrote.
"""

from __future__ import annotations

import email
import time
from datetime import UTC, datetime
from email import policy
from pathlib import Path
from types import SimpleNamespace

import pytest

from gradeflow.airflow import alerts, tasks
from gradeflow.release import publish

from .helpers import DAY, answers_for
from .test_pipeline import GOOD, _load, _prepare


def _new_mail(mail_dir: Path, before: set[str], timeout: float = 10) -> list[email.message.EmailMessage]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = sorted(set(p.name for p in mail_dir.glob("*.eml")) - before)
        if new:
            return [email.message_from_bytes((mail_dir / n).read_bytes(), policy=policy.default) for n in new]
        time.sleep(0.05)
    return []


def _text(message) -> str:
    return message.get_body(preferencelist=("html", "plain")).get_content()


@pytest.fixture
def mailbox(embedded_stack):
    folder = Path(embedded_stack.mail_dir)
    folder.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in folder.glob("*.eml")}
    return lambda: _new_mail(folder, before)


def _context(**extra):
    run = SimpleNamespace(run_id="manual__test", logical_date=None, run_after=datetime.now(UTC), dag_id="x")
    return {"dag_run": run, "params": {"exam_day": DAY}, **extra}


def test_an_alert_is_delivered_through_the_smtp_provider_to_the_mail_sink(mailbox):
    alert = alerts.review_share_alert("lakeshore", DAY, {"answers": 100, "in_review": 35}, 0.2)
    assert alerts.send(alert) is True
    (message,) = mailbox()
    assert message["To"] == "results@lakeshore.example.in" and message["From"] == "gradeflow@localhost"
    assert message["Subject"] == f"[GradeFlow] lakeshore {DAY}: 35% of answers wait in human review (alert above 20%)"
    assert message["X-GradeFlow-Alert"] == "review_share"
    assert "35 of 100 answers" in _text(message) and "What to do" in _text(message)


def test_no_alert_below_the_review_share():
    assert alerts.review_share_alert("lakeshore", DAY, {"answers": 100, "in_review": 20}, 0.2) is None
    assert alerts.review_share_alert("lakeshore", DAY, {"answers": 0, "in_review": 0}, 0.2) is None


def test_a_failed_gate_says_which_answers_are_unaccounted_why_and_what_to_do(conn, s3, emulator, mailbox):
    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)  # rule answers graded; batch files written, never submitted
    # A stale review item on a graded answer: that answer now has two outcomes, the gate must refuse.
    conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                 "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades "
                 "WHERE grader = 'rule' AND submission_id = 's1' AND question_id = 'q1'")
    conn.commit()
    with pytest.raises(publish.ReleaseBlocked) as blocked:
        tasks.validate_grades("northfield", **_context())
    message = str(blocked.value)
    assert "nothing was released" in message and "with more than one 1" in message
    assert "by question (most first): bio-101/q1 (1)" in message  # which answers
    assert "have more than one outcome: a current grade and an open review item" in message  # why
    assert "1 batch job(s) written but never submitted" in message  # what else is open
    assert "gradeflow__admin_rerun with scope question" in message  # what to do
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 0

    # The task's failure callback (Airflow's notifier machinery) e-mails it to the institution.
    ti = SimpleNamespace(task_id="validate_grades", dag_id="northfield__publish", try_number=1, log_url=None)
    from airflow.sdk import DAG

    dag = DAG("northfield__publish", schedule=None, tags=["gradeflow", "institution:northfield"])
    tasks_notifier = alerts.FailureNotifier("task")
    tasks_notifier(_context(ti=ti, task_instance=ti, dag=dag, exception=blocked.value))
    (mail,) = mailbox()
    assert mail["X-GradeFlow-Alert"] == "gate_failed"
    # The institution's, with the operators in copy.
    assert mail["To"] == "exams-office@northfield.example.edu, gradeflow-oncall@platform.example.org"
    assert "release gate failed" in mail["Subject"]
    assert "bio-101/q1 (1)" in _text(mail) and "Run northfield__grade" in _text(mail)


def test_a_day_without_answers_is_skipped_and_never_released(conn, s3, caplog):
    from airflow.sdk.exceptions import AirflowSkipException

    with caplog.at_level("INFO"), pytest.raises(AirflowSkipException, match="nothing to release"):
        tasks.validate_grades("northfield", **_context())
    assert f"no answers for northfield {DAY}: nothing to release" in caplog.text
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM validation_runs").fetchone()[0] == 0


def _rerun_context(paused: set[str], **params):
    base = {"institution": "northfield", "exam_day": DAY, "stage": "prepare", "scope": "day", "scope_value": None,
            "reason": "the rubric was corrected by the examiner", "dry_run": False}
    asked = []

    def get_dag(dag_id):  # what the task SDK answers from Airflow's metadata (DagModel.is_paused)
        asked.append(dag_id)
        return SimpleNamespace(dag_id=dag_id, is_paused=dag_id in paused)

    run = SimpleNamespace(run_id="manual__rerun", triggering_user_name="admin")
    return {"dag_run": run, "params": {**base, **params}, "ti": SimpleNamespace(get_dag=get_dag)}, asked


def test_admin_rerun_refuses_at_once_when_a_stage_dag_is_paused(conn, s3):
    from gradeflow.admin.rerun import RerunRefused

    context, asked = _rerun_context({"northfield__publish"})
    with pytest.raises(RerunRefused, match="northfield__publish is paused.*Nothing was changed"):
        tasks.reset_for_rerun(**context)
    assert asked == ["northfield__prepare", "northfield__grade", "northfield__publish"]
    # Refused before any change, and the refusal itself is audited with who and why.
    assert conn.execute("SELECT action FROM audit_log").fetchall() == [("rerun_refused",)]
    assert conn.execute("SELECT count(*) FROM grades WHERE NOT is_current").fetchone()[0] == 0


def test_admin_rerun_checks_only_the_stages_it_triggers(conn, s3):
    _load(conn, s3, answers_for("s1", "st1", GOOD))  # a scope that matches nothing is refused before pauses
    context, asked = _rerun_context({"northfield__prepare"}, stage="publish")
    assert tasks.reset_for_rerun(**context)["stage"] == "publish"
    assert asked == ["northfield__publish"]


def test_admin_dry_run_with_defaults_runs_and_a_real_run_needs_day_and_reason(conn, s3):
    from gradeflow.admin.rerun import RerunRefused

    context, asked = _rerun_context({"northfield__prepare"}, exam_day=None, reason=None, dry_run=True)
    # The defaults are a dry run of yesterday (local): it runs, and says plainly that the day has no answers.
    with pytest.raises(RerunRefused, match="matches no answer of northfield"):
        tasks.reset_for_rerun(**context)
    assert asked == []  # a dry run triggers nothing, so pauses do not matter
    for missing, message in (("exam_day", "exam_day is required"), ("reason", "reason is required")):
        context, _ = _rerun_context(set(), **{missing: None})
        with pytest.raises(ValueError, match=message):
            tasks.reset_for_rerun(**context)
    context, _ = _rerun_context(set(), scope="student", scope_value=None)
    with pytest.raises(ValueError, match="needs scope_value"):
        tasks.reset_for_rerun(**context)
