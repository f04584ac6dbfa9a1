"""Faculty sign-off before students: the publish DAG's steps between the institution's release and the students'.

`student_release` per institution (include/institutions.yaml):
- `auto`: `export_for_students` right after `publish_release`;
- `after_faculty_approval`: `ask_faculty_approval` (`FacultyApprovalOperator`, Airflow's human-in-the-loop
  `ApprovalOperator`) first writes the day's report and asks in the Airflow UI (Required actions) with the report
  linked; Approve lets the export run, Reject skips it; no answer within `faculty_approval_hours` fails the task
  (`ApprovalTimedOut`, never retried, never released to students) and alerts the institution. Every request and
  decision, with who made it, is also a line of GradeFlow's `audit_log`;
- `at HH:MM`: `wait_for_student_release` (`StudentReleaseWait`) defers on the triggerer until HH:MM local the
  morning after the exam day (no worker held; a time already passed goes on at once), then the export runs.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow.providers.standard.exceptions import HITLTimeoutError
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from gradeflow.airflow.tasks import release_of_run
from gradeflow.core.config import Institution, get_institution

log = logging.getLogger(__name__)

MAX_LINK_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned link may live


class ApprovalTimedOut(HITLTimeoutError, AirflowFailException):
    """No faculty decision by the deadline: students get nothing; not retried (a retry would ask again)."""


def report_link(s3: Any, key: str, hours: float) -> str:
    """A link faculty can open from the Airflow UI: a presigned GET of the report, valid for the approval window."""
    from gradeflow.core.config import bucket

    seconds = int(min(MAX_LINK_SECONDS, (hours + 1) * 3600))
    return s3.generate_presigned_url("get_object", Params={"Bucket": bucket(), "Key": key}, ExpiresIn=seconds)


def approval_text(inst: Institution, day: str, version: int, counts: dict, report_key: str, link: str,
                  run_id: str) -> tuple[str, str]:
    """The subject and Markdown body faculty see in the Airflow UI's Required actions."""
    from gradeflow.core.config import bucket

    deadline = datetime.now(UTC) + timedelta(hours=inst.faculty_approval_hours)
    subject = f"{inst.name}: release exam day {day} (v{version}) to students?"
    pending = sum(int(counts.get(k) or 0) for k in ("in_review", "deferred", "pending_model", "received"))
    body = (
        f"**{inst.name}** (`{inst.id}`), exam day **{day}**, release **v{version}** (run `{run_id}`).\n\n"
        f"The institution's release is out (faculty and the exam office see it). Students see nothing until you "
        f"approve.\n\n"
        f"- Answers: {int(counts.get('answers') or 0):,}; graded by rule {int(counts.get('graded_rule') or 0):,}, "
        f"by the model {int(counts.get('graded_llm') or 0):,}, by a person {int(counts.get('graded_human') or 0):,}; "
        f"not graded yet {pending:,} (released as pending).\n"
        f"- **The day's report**: [open the report]({link}) (`s3://{bucket()}/{report_key}`).\n\n"
        f"**Approve** writes each student's own results to `releases/{inst.s3_prefix}/{day}/students/v{version}/`. "
        f"**Reject** gives students nothing for this version (a later version asks again). With no decision by "
        f"{deadline.astimezone(inst.tz):%Y-%m-%d %H:%M} {inst.timezone} ({inst.faculty_approval_hours:g} h) the "
        "request times out: nothing goes to students and the institution is alerted.")
    return subject, body


class FacultyApprovalOperator(ApprovalOperator):
    """Ask a faculty member (Airflow UI, Required actions) to approve the day for students; audit the answer."""

    def __init__(self, *, institution_id: str, **kwargs: Any) -> None:
        inst = get_institution(institution_id)
        kwargs.setdefault("subject", f"{inst.name}: release the exam day to students?")
        super().__init__(response_timeout=timedelta(hours=inst.faculty_approval_hours), **kwargs)
        self.institution_id = institution_id

    def execute(self, context: Any) -> Any:
        from gradeflow.airflow import tasks
        from gradeflow.core import db, storage
        from gradeflow.release import students

        inst = get_institution(self.institution_id)
        done = release_of_run(context)
        if not done:
            log.info("publish_release released nothing for this run: no approval to ask")
            return None
        day, version = done["exam_day"], int(done["version"])
        s3 = storage.client(inst.id)
        if students.exported(s3, inst, day, version):
            log.info("Students already have %s %s v%d: no approval asked again", inst.id, day, version)
            return {"chosen_options": [self.APPROVE], "already_exported": True, "version": version}
        report_key = tasks.write_report(inst.id, **context)["report_key"]  # the page faculty are sent to
        run_id = context["dag_run"].run_id
        self.subject, self.body = approval_text(inst, day, version, done, report_key,
                                                report_link(s3, report_key, inst.faculty_approval_hours), run_id)
        with tasks.open_db(inst.id) as conn, conn.transaction():
            db.audit(conn, f"{inst.id}__publish", "faculty_approval_requested", inst.id, date.fromisoformat(day),
                     {"version": version, "run_id": run_id, "report_key": report_key,
                      "timeout_hours": inst.faculty_approval_hours})
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        """Audit the decision (and alert on Reject) first: on Reject, ApprovalOperator skips the export by raising
        Airflow's DownstreamTasksSkipped, so nothing after its execute_complete would run."""
        done = release_of_run(context) or {}
        if "error" in event:
            self._audit(done, "faculty_approval_timed_out", "airflow", {"error": str(event.get("error"))})
            try:
                return super().execute_complete(context=context, event=event)
            except HITLTimeoutError as timeout:
                raise ApprovalTimedOut(
                    f"no faculty decision on {self.institution_id} {done.get('exam_day')} v{done.get('version')} "
                    f"within {get_institution(self.institution_id).faculty_approval_hours:g} h: nothing released to "
                    "students. To release it, clear this task (it asks again) or trigger the publish DAG for the "
                    "day.") from timeout
        chosen = list(event.get("chosen_options") or [])
        self.validate_chosen_options(chosen)
        user = event.get("responded_by_user") or {}
        who = user.get("name") or user.get("id") or "unknown"
        at = event.get("responded_at")
        at = at.isoformat() if hasattr(at, "isoformat") else at
        approved = chosen[:1] == [self.APPROVE]
        self._audit(done, "faculty_approved" if approved else "faculty_rejected", who,
                    {"user_id": user.get("id"), "user_name": user.get("name"), "responded_at": at})
        if not approved:
            from gradeflow.airflow import alerts

            alerts.send(alerts.students_rejected_alert(self.institution_id, done.get("exam_day"),
                                                       done.get("version"), who, context["dag_run"].run_id))
        result = super().execute_complete(context=context, event=event)  # Reject: skips the export (raises)
        return {"chosen_options": result["chosen_options"], "responded_by": who, "user_id": user.get("id"),
                "responded_at": at, "version": done.get("version")}

    def _audit(self, done: dict, action: str, actor: str, details: dict) -> None:
        from gradeflow.airflow import tasks
        from gradeflow.core import db

        day = done.get("exam_day")
        with tasks.open_db(self.institution_id) as conn, conn.transaction():
            db.audit(conn, actor, action, self.institution_id, date.fromisoformat(day) if day else None,
                     {"version": done.get("version"), **details})
        log.info("Faculty sign-off %s %s v%s: %s by %s", self.institution_id, day, done.get("version"), action, actor)


class StudentReleaseWait(BaseOperator):
    """`at HH:MM`: wait, deferred on the triggerer (no worker held), until students may see the day."""

    def __init__(self, *, institution_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.institution_id = institution_id

    def execute(self, context: Any) -> Any:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        done = release_of_run(context)
        if not done:
            return None
        moment = get_institution(self.institution_id).student_release_time(date.fromisoformat(done["exam_day"]))
        if moment is None or moment <= datetime.now(UTC):
            log.info("Student release time %s has passed: students get the day now", moment)
            return {"release_at": moment.isoformat() if moment else None}
        log.info("Students get %s %s at %s (local): waiting deferred", self.institution_id, done["exam_day"], moment)
        self.defer(trigger=DateTimeTrigger(moment=moment.astimezone(UTC)), method_name="execute_complete")
        return None

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        return {"released_at": datetime.now(UTC).isoformat()}
