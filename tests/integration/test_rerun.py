"""Admin rerun on the real stack: a regrade is a new version, audited, and never double-pays."""

from __future__ import annotations

import pytest

from gradeflow import prepare, publish
from gradeflow.config import get_institution
from gradeflow.rerun import RerunRefused, RerunRequest, reset_scope

from .helpers import answers_for
from .test_pipeline import EXAM_DAY, GOOD, NORTH, _grade, _load, _prepare


def _request(**overrides) -> RerunRequest:
    params = {"institution": "northfield", "exam_day": str(EXAM_DAY), "stage": "prepare", "scope": "question",
              "scope_value": "bio-101/q4", "reason": "rubric for q4 corrected by the examiner", "dry_run": False}
    params.update(overrides)
    return RerunRequest.from_params(params, requested_by="admin@example.org")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"exam_day": "23/11/2026"}, "exam_day"),
    ({"scope": "student", "scope_value": ""}, "needs scope_value"),
    ({"reason": "because"}, "reason"),
    ({"scope": "everything"}, "scope must be"),
])
def test_form_is_validated(overrides, message):
    with pytest.raises(ValueError, match=message):
        _request(**overrides)


def test_regrade_one_question_is_a_new_version_and_a_new_release(conn, s3, emulator, openai_client):
    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    v1 = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)

    dry = reset_scope(conn, NORTH, _request(dry_run=True))
    assert dry["answers_in_scope"] == 2 and dry["grades_superseded"] == 0
    result = reset_scope(conn, NORTH, _request())
    assert (result["grades_superseded"], result["new_version"]) == (2, 2)
    # q4 is ungraded now: its answers are `received` again (a release would say so, never show the old grade).
    assert publish.day_counts(conn, NORTH, EXAM_DAY)["received"] == 2

    plan = _prepare(conn, s3)
    assert plan.distinct_requests == 2 and plan.jobs_written == 1
    _grade(conn, s3, openai_client)
    assert emulator.stats()["batches_created"] == 2
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    v2 = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    assert (v1["version"], v2["version"]) == (1, 2)
    current = conn.execute("SELECT version, count(*) FROM grades WHERE is_current GROUP BY version ORDER BY 1")
    assert current.fetchall() == [(1, 6), (2, 2)]
    assert conn.execute("SELECT count(*) FROM grades WHERE NOT is_current").fetchone()[0] == 2
    actions = [r[0] for r in conn.execute("SELECT action FROM audit_log WHERE actor <> 'ingest' ORDER BY audit_id")]
    assert actions == ["rerun_dry_run", "rerun_reset"]


def test_refused_while_a_batch_may_still_deliver(conn, s3, emulator, openai_client):
    from gradeflow import grading

    emulator.faults(timing={"validating": 30, "in_progress": 30, "finalizing": 30})
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    grading.submit_jobs(conn, s3, openai_client, NORTH, EXAM_DAY)
    with pytest.raises(RerunRefused, match="may still deliver"):
        reset_scope(conn, NORTH, _request())
    assert prepare.grading_version(conn, get_institution("northfield"), EXAM_DAY) == 1


def test_rerun_from_grade_or_publish_changes_no_grade(conn, s3, emulator, openai_client):
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    before = conn.execute("SELECT grade_id FROM grades WHERE is_current ORDER BY 1").fetchall()
    for stage in ("grade", "publish"):
        result = reset_scope(conn, NORTH, _request(stage=stage, scope="day", scope_value=""))
        assert result["grades_superseded"] == 0 and result["new_version"] == 1
    assert conn.execute("SELECT grade_id FROM grades WHERE is_current ORDER BY 1").fetchall() == before
    assert publish.validate(conn, NORTH, EXAM_DAY).success


def test_rerun_before_submission_withdraws_the_old_work(conn, s3, emulator, openai_client):
    from gradeflow import grading

    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)  # v1 job written, not submitted
    result = reset_scope(conn, NORTH, _request())
    assert result["requests_withdrawn"] == 2
    _prepare(conn, s3)  # v2 job
    grading.submit_jobs(conn, s3, openai_client, NORTH, EXAM_DAY)
    assert emulator.stats()["batches_created"] == 1, "the withdrawn v1 job must never be sent"
    _grade(conn, s3, openai_client)
    assert publish.validate(conn, NORTH, EXAM_DAY).success


def test_clearing_the_reset_task_does_not_reset_twice(conn, s3, emulator, openai_client):
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    request = RerunRequest.from_params(
        {"institution": "northfield", "exam_day": str(EXAM_DAY), "stage": "prepare", "scope": "day",
         "scope_value": "", "reason": "re-marking after a complaint", "dry_run": False},
        requested_by="admin", run_id="manual__2026-11-24T09:00:00")
    first = reset_scope(conn, NORTH, request)
    again = reset_scope(conn, NORTH, request)
    assert first["new_version"] == again["new_version"] == 2 and first["grades_superseded"] == 4
    assert conn.execute("SELECT count(*) FROM audit_log WHERE actor <> 'ingest'").fetchone()[0] == 1
