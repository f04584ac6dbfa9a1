"""Admin reruns: regrade a day, a question or a student as a new grading version, with an audit trail.

A rerun supersedes the current grades in its scope (they stay in `grades` with is_current = false),
closes their open reviews, raises the day's grading version and writes the audit log; the stage
DAGs then regrade and republish as usual, and the new state is released as a new version. It is
refused while a batch of that day may still deliver, so the same work is never paid for twice, and
when its scope matches no answer (a typo in a question or student id must not raise the version).
Every request is in the audit log with who and why: done, dry run, or refused (with the reason).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

from gradeflow import lifecycle
from gradeflow.core import config, db
from gradeflow.core.config import Institution

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SCOPES = ("day", "question", "student")
STAGES = config.STAGES[config.STAGES.index("prepare"):]  # where a rerun may start
DAY_PATTERN = r"^\d{4}-\d{2}-\d{2}$"


class RerunRefused(RuntimeError):
    """The rerun cannot run now; the message says why and what to do."""


@dataclass(frozen=True)
class RerunRequest:
    """A validated admin request (from the trigger form's Params)."""

    institution: str
    exam_day: date
    stage: str
    scope: str
    scope_value: str
    reason: str
    requested_by: str
    dry_run: bool
    run_id: str = ""

    @classmethod
    def from_params(cls, params: dict, requested_by: str, run_id: str = "") -> RerunRequest:
        """Check the form beyond what its JSON schema can say (dates, scope values)."""
        day = str(params.get("exam_day", ""))
        if not re.match(DAY_PATTERN, day):
            raise ValueError(f"exam_day must be YYYY-MM-DD, got {day!r}")
        scope, value = params.get("scope", "day"), str(params.get("scope_value") or "").strip()
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if scope != "day" and not value:
            raise ValueError(f"scope {scope!r} needs scope_value (a question id or a student id)")
        reason = str(params.get("reason") or "").strip()
        if len(reason) < 10:
            raise ValueError("reason must say why, in at least 10 characters")
        stage = str(params.get("stage", "prepare"))
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        return cls(str(params["institution"]), date.fromisoformat(day), stage, scope, value, reason, requested_by,
                   bool(params.get("dry_run", True)), run_id)


def reset_scope(conn: psycopg.Connection, inst: Institution, request: RerunRequest) -> dict:
    """Supersede the scope's grades and reviews and raise the version (or only count, on a dry run).

    Only a rerun from `prepare` regrades; from `grade` or `publish` it resumes those stages and
    changes no grade. Clearing the task that called this is safe: a run resets once.
    """
    params = {"inst": inst.id, "day": request.exam_day, "scope": request.scope, "value": request.scope_value,
              "run_id": request.run_id}
    regrade = request.stage == "prepare" and not request.dry_run
    try:
        return _reset(conn, inst, request, params, regrade)
    except RerunRefused as refused:
        record_refusal(conn, inst.id, request.requested_by, _request_details(request), str(refused))
        raise


def _request_details(request: RerunRequest) -> dict:
    return {**asdict(request), "exam_day": str(request.exam_day)}


def record_refusal(conn: psycopg.Connection, institution_id: str, requested_by: str, details: dict,
                   reason: str) -> None:
    """Audit a refused request (its own transaction: the refused work was rolled back)."""
    with conn.transaction():
        db.audit(conn, requested_by, "rerun_refused", institution_id, details.get("exam_day") or None,
                 {**details, "refused": reason})
    log.warning("Rerun refused for %s (requested by %s): %s", institution_id, requested_by, reason)


def _reset(conn: psycopg.Connection, inst: Institution, request: RerunRequest, params: dict, regrade: bool) -> dict:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (f"rerun:{inst.id}:{request.exam_day}",))
        if request.run_id:
            done = db.fetch_all(conn, "rerun/find_run", params)
            if done:
                log.info("Rerun run %s already recorded; not resetting again", request.run_id)
                return done[0]["details"]
        inflight = db.fetch_all(conn, "rerun/inflight_jobs", params)
        if inflight and regrade:
            ids = ", ".join(f"{j['provider_batch_id']} ({j['status']})" for j in inflight)
            raise RerunRefused(f"{inst.id} {request.exam_day} has batches that may still deliver: {ids}. "
                               "Wait for the grade DAG to collect them, then rerun.")
        db.execute(conn, "rerun/scoped_answers", params)
        answers = db.fetch_all(conn, "rerun/count_scope", params)[0]["answers"]
        version = lifecycle.grading_version(conn, inst, request.exam_day)
        if not answers:
            what = "the whole day" if request.scope == "day" else f"{request.scope} {request.scope_value!r}"
            raise RerunRefused(f"scope {what} matches no answer of {inst.id} on {request.exam_day}: nothing to "
                               f"rerun, version stays v{version}. Check the id (question: 'q4' or 'exam/q4'; "
                               "student: the student_id as in the submissions) and the exam day.")
        result = {"answers_in_scope": answers, "old_version": version, "new_version": version,
                  "grades_superseded": 0, "reviews_closed": 0, "requests_withdrawn": 0, "dry_run": request.dry_run}
        if regrade:
            result["grades_superseded"] = db.execute(conn, "rerun/supersede_grades", params)
            result["reviews_closed"] = db.execute(conn, "rerun/resolve_reviews", params)
            result["requests_withdrawn"] = lifecycle.withdraw_unsent(conn, inst, request.exam_day)
            lifecycle.sync_review_items(conn, inst, request.exam_day)  # items with nothing waiting -> closed
            result["new_version"] = version + 1
        action = "rerun_dry_run" if request.dry_run else "rerun_reset" if regrade else "rerun_resume"
        details = {**_request_details(request), "version": result["new_version"], **result}
        db.audit(conn, request.requested_by, action, inst.id, request.exam_day, details)
    log.info("Rerun %s %s from %s, scope %s %r: %s", inst.id, request.exam_day, request.stage, request.scope,
             request.scope_value, result)
    return details
