"""publish never races grading: a state that changed between the gate and the release reruns the gate at once,
instead of failing `publish_release` with ReleaseBlocked on every retry (retries did not rerun the gate)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from gradeflow.airflow import alerts, tasks

from .helpers import DAY, answers_for
from .test_pipeline import GOOD, _load, _prepare


def _context():
    run = SimpleNamespace(run_id="manual__race", logical_date=None, run_after=datetime.now(UTC), dag_id="x")
    return {"dag_run": run, "params": {"exam_day": DAY}}


def _gate_passed(conn, s3) -> dict:
    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)
    return tasks.validate_grades("northfield", **_context())


def test_grades_changed_after_the_gate_are_revalidated_and_released(conn, admin_conn, s3):
    gate = _gate_passed(conn, s3)
    # Grading goes on (a result collected) between the gate and the release.
    changed = admin_conn.execute("UPDATE grades SET score = 0 WHERE grade_id = (SELECT min(grade_id) FROM grades "
                                 "WHERE is_current AND score > 0) RETURNING submission_id, question_id").fetchone()
    result = tasks.publish_release("northfield", gate=gate, **_context())
    assert result["version"] == 1 and result["new"] is True
    runs = conn.execute("SELECT count(*), count(*) FILTER (WHERE success) FROM validation_runs").fetchone()
    assert runs == (2, 2)  # the task's gate, and the one it reran itself
    released = conn.execute("SELECT r.validation_id, max(v.validation_id) FROM releases r, validation_runs v "
                            "GROUP BY r.validation_id").fetchone()
    assert released[0] == released[1] != gate["validation_id"]  # the state released is the one validated last
    score = conn.execute("SELECT score FROM release_results WHERE submission_id = %s AND question_id = %s",
                         changed).fetchone()[0]
    assert score == 0


def test_a_gate_that_fails_when_rerun_fails_for_good_and_alerts_as_a_gate_failure(conn, admin_conn, s3):
    from airflow.sdk.exceptions import AirflowFailException

    gate = _gate_passed(conn, s3)
    # An answer now has two outcomes: the gate rerun must refuse it, and retrying cannot help.
    admin_conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                       "SELECT institution_id, submission_id, question_id, exam_day, 'manual' FROM grades "
                       "WHERE grader = 'rule' AND submission_id = 's1' AND question_id = 'q1'")
    with pytest.raises(AirflowFailException, match="changed after the gate, and the gate run again failed") as failed:
        tasks.publish_release("northfield", gate=gate, **_context())
    assert "bio-101/q1 (1)" in str(failed.value)
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 0
    ti = SimpleNamespace(task_id="publish_release", dag_id="northfield__publish", try_number=1, log_url=None)
    dag = SimpleNamespace(dag_id="northfield__publish", tags=["gradeflow", "institution:northfield"])
    alert = alerts.failure_alert({"dag": dag, "ti": ti, "dag_run": _context()["dag_run"],
                                  "exception": failed.value}, "task")
    assert alert.kind == "gate_failed"
