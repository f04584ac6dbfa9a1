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
    assert not publish.validate(conn, NORTH, EXAM_DAY).success  # q4 is ungraded now: nothing can be released

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
    actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY audit_id")]
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
