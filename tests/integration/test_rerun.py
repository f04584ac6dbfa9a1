"""Admin rerun on the real stack: a regrade is a new version, audited, and never double-pays."""

from __future__ import annotations

import pytest

from gradeflow import lifecycle
from gradeflow.admin.rerun import RerunRefused, RerunRequest, reset_scope
from gradeflow.core.config import get_institution
from gradeflow.grading.context import Night
from gradeflow.release import publish

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
    assert actions == ["release", "rerun_dry_run", "rerun_reset", "release"]  # every release is audited too


def test_refused_while_a_batch_may_still_deliver(conn, s3, emulator, openai_client):
    from gradeflow.grading import night as grading

    emulator.faults(timing={"validating": 30, "in_progress": 30, "finalizing": 30})
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    grading.submit_jobs(Night(NORTH, EXAM_DAY, conn, s3, openai_client))
    with pytest.raises(RerunRefused, match="may still deliver"):
        reset_scope(conn, NORTH, _request())
    assert lifecycle.grading_version(conn, get_institution("northfield"), EXAM_DAY) == 1
    assert _audit(conn) == [("rerun_refused", "admin@example.org", "rubric for q4 corrected by the examiner")]


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
    from gradeflow.grading import night as grading

    _load(conn, s3, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", "energy"))
    _prepare(conn, s3)  # v1 job written, not submitted
    result = reset_scope(conn, NORTH, _request())
    assert result["requests_withdrawn"] == 2
    _prepare(conn, s3)  # v2 job
    grading.submit_jobs(Night(NORTH, EXAM_DAY, conn, s3, openai_client))
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


def _audit(conn) -> list[tuple]:
    return conn.execute("SELECT action, actor, details ->> 'reason' FROM audit_log WHERE action LIKE 'rerun%'"
                        " ORDER BY audit_id").fetchall()


@pytest.mark.parametrize(("scope", "value", "named"), [
    ("question", "bio-101/q9", "question 'bio-101/q9'"),
    ("question", "q44", "question 'q44'"),
    ("student", "st-typo", "student 'st-typo'"),
])
def test_a_scope_that_matches_nothing_is_refused_not_a_new_version(conn, s3, emulator, openai_client,
                                                                   scope, value, named):
    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    for dry_run in (True, False):
        with pytest.raises(RerunRefused, match=f"scope {named} matches no answer of northfield on {EXAM_DAY}"):
            reset_scope(conn, NORTH, _request(scope=scope, scope_value=value, dry_run=dry_run))
    assert lifecycle.grading_version(conn, NORTH, EXAM_DAY) == 1
    assert conn.execute("SELECT count(*) FROM grades WHERE NOT is_current").fetchone()[0] == 0
    refused = conn.execute("SELECT action, actor, details ->> 'scope_value', (details ->> 'dry_run')::boolean,"
                           " details ->> 'refused' FROM audit_log WHERE action LIKE 'rerun%' ORDER BY audit_id"
                           ).fetchall()
    assert [r[:4] for r in refused] == [("rerun_refused", "admin@example.org", value, True),
                                        ("rerun_refused", "admin@example.org", value, False)]
    assert all("matches no answer" in r[4] for r in refused)


def test_a_day_without_answers_is_refused(conn):
    with pytest.raises(RerunRefused, match="scope the whole day matches no answer of northfield"):
        reset_scope(conn, NORTH, _request(scope="day", scope_value="", stage="publish"))
    assert _audit(conn) == [("rerun_refused", "admin@example.org", "rubric for q4 corrected by the examiner")]


def test_every_admin_request_through_the_task_is_audited_with_who_and_why(conn, s3, emulator, openai_client):
    """Done, dry run, refused by the form and refused by the database: each leaves one audit line."""
    from types import SimpleNamespace

    from gradeflow.airflow import tasks

    _load(conn, s3, answers_for("s1", "st1", GOOD))
    _prepare(conn, s3)
    _grade(conn, s3, openai_client)
    form = {"institution": "northfield", "exam_day": str(EXAM_DAY), "stage": "prepare", "scope": "question",
            "scope_value": "bio-101/q4", "reason": "examiner corrected the rubric", "dry_run": True}
    runs = [({**form}, None), ({**form, "reason": "oops"}, ValueError),
            ({**form, "scope_value": "q9"}, RerunRefused), ({**form, "dry_run": False}, None)]
    for n, (params, error) in enumerate(runs):
        context = {"params": params, "dag_run": SimpleNamespace(run_id=f"manual__{n}", triggering_user_name="ada"),
                   "ti": SimpleNamespace(get_dag=lambda dag_id: SimpleNamespace(is_paused=False))}
        if error:
            with pytest.raises(error):
                tasks.reset_for_rerun(**context)
        else:
            tasks.reset_for_rerun(**context)
    lines = conn.execute("SELECT action, actor, details ->> 'reason', details ->> 'run_id', details ? 'refused'"
                         " FROM audit_log WHERE action LIKE 'rerun%' ORDER BY audit_id").fetchall()
    assert lines == [("rerun_dry_run", "ada", "examiner corrected the rubric", "manual__0", False),
                     ("rerun_refused", "ada", "oops", "manual__1", True),
                     ("rerun_refused", "ada", "examiner corrected the rubric", "manual__2", True),
                     ("rerun_reset", "ada", "examiner corrected the rubric", "manual__3", False)]
