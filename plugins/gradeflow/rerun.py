"""Admin reruns: regrade a day, a question or a student as a new grading version, with an audit trail.

A rerun supersedes the current grades in its scope (they stay in `grades` with is_current = false),
closes their open reviews, raises the day's grading version and writes the audit log; the stage
DAGs then regrade and republish as usual, and the new state is released as a new version. It is
refused while a batch of that day may still deliver, so the same work is never paid for twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from datetime import date
from typing import TYPE_CHECKING

from gradeflow import db
from gradeflow.config import Institution
from gradeflow.prepare import grading_version

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SCOPES = ("day", "question", "student")
STAGES = ("prepare", "grade", "publish")
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
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"rerun:{inst.id}:{request.exam_day}",))
        if request.run_id:
            done = db.fetch_all(conn, "rerun/find_run", params)
            if done:
                log.info("Rerun run %s already recorded; not resetting again", request.run_id)
                return done[0]["details"]
        inflight = db.fetch_all(conn, "rerun/inflight_jobs", params)
        if inflight and regrade:
            ids = ", ".join(f"{j['openai_batch_id']} ({j['status']})" for j in inflight)
            raise RerunRefused(f"{inst.id} {request.exam_day} has batches that may still deliver: {ids}. "
                               "Wait for the grade DAG to collect them, then rerun.")
        db.execute(conn, "rerun/scoped_answers", params)
        answers = db.fetch_all(conn, "rerun/count_scope", params)[0]["answers"]
        version = grading_version(conn, inst, request.exam_day)
        result = {"answers_in_scope": answers, "old_version": version, "new_version": version,
                  "grades_superseded": 0, "reviews_closed": 0, "requests_withdrawn": 0, "dry_run": request.dry_run}
        if regrade:
            result["grades_superseded"] = db.execute(conn, "rerun/supersede_grades", params)
            result["reviews_closed"] = db.execute(conn, "rerun/resolve_reviews", params)
            result["requests_withdrawn"] = db.execute(conn, "rerun/retire_unsubmitted", params)
            result["new_version"] = version + 1
        action = "rerun_dry_run" if request.dry_run else "rerun_reset" if regrade else "rerun_resume"
        details = {**asdict(request), "exam_day": str(request.exam_day), "version": result["new_version"], **result}
        db.audit(conn, request.requested_by, action, inst.id, request.exam_day, details)
    log.info("Rerun %s %s from %s, scope %s %r: %s", inst.id, request.exam_day, request.stage, request.scope,
             request.scope_value, result)
    return details
