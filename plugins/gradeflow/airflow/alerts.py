"""Alerts that reach people: e-mail through Airflow's notifier machinery and the SMTP provider.

What is alerted, and to whom (include/institutions.yaml: the operators' top-level `platform_alert_emails`, each
institution's `alert_emails`):
- a task that failed for good, and a DAG run that failed (`FailureNotifier`, in every DAG's callbacks): the
  platform's (database, S3, API, configuration), so to `platform_alert_emails` (to the institution when that
  list is empty);
- a failed release gate: which answers are unaccounted, why, and what to do (`gate_failure_alert`): to the
  institution, copied to the platform;
- results not released by the institution's `release_deadline` (`release_deadline_missed`, an Airflow
  deadline alert on the publish DAG, run by the triggerer), never for a day without answers nor for a released day
  whose run waits for the faculty's sign-off: the institution;
- more than `review_alert_share` of a day's answers waiting in human review (`review_share_alert`), naming the
  reasons that fired, once per released version: the institution.
- files with refused rows, or refused whole (`rejects_alert`): one mail per ingest sweep linking each rejects
  report: the institution.
- a faculty sign-off that rejected the day for students (`students_rejected_alert`), or that nobody gave within
  `faculty_approval_hours` (the approval task fails with `ApprovalTimedOut`, kind `approval_timed_out`): the
  institution, with the operators in copy; nothing goes to students either way.

Every alert names the institution, the exam day, the run id and the cause (for a failure: the exception, its
type and the file and line that raised it).

Every alert is also logged as one `GRADEFLOW ALERT` line, so it is greppable even where no mail is
configured. Sending never fails the task that raised it: a mail server that is down is logged.
The mail goes out through connection `gradeflow_smtp` (host, port, login, `from_email` in its extra).
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from gradeflow.core.config import SMTP_CONN_ID, ConfigError, get_institution

log = logging.getLogger("gradeflow.airflow.alerts")


@dataclass(frozen=True)
class Alert:
    """One message: whose, what kind, a subject that names the cause, and a plain-text body."""

    institution_id: str | None
    kind: str  # task_failed | run_failed | gate_failed | deadline_missed | review_share | file_rejected |
    #            students_rejected | approval_timed_out
    subject: str
    body: str


PLATFORM_KINDS = frozenset({"task_failed", "run_failed"})  # the operators' (institutions get theirs)
# the institution's, with the operators in copy
COPIED_TO_PLATFORM = frozenset({"gate_failed", "approval_timed_out", "students_rejected"})


def recipients(institution_id: str | None, kind: str = "") -> list[str]:
    """Who is told of an alert of this kind: the operators (`platform_alert_emails`) for platform failures, the
    institution's `alert_emails` for what is theirs; never nobody when either list has someone."""
    from gradeflow.core.config import load_platform_alert_emails

    own: list[str] = []
    if institution_id:
        try:
            own = list(get_institution(institution_id).alert_emails)
        except ConfigError:
            own = []
    try:
        platform = list(load_platform_alert_emails())
    except ConfigError as exc:
        log.error("platform_alert_emails unreadable (%s): platform alerts go to the institution", exc)
        platform = []
    if kind in PLATFORM_KINDS:
        return platform or own
    if kind in COPIED_TO_PLATFORM:
        return own + [e for e in platform if e not in own]
    return own or ([] if institution_id else platform)


def _prepare(alert: Alert):
    """Log the alert; return an SmtpNotifier for its recipients, or None when it can only be logged."""
    log.error("GRADEFLOW ALERT [%s] %s | %s", alert.kind, alert.subject, " / ".join(alert.body.splitlines()))
    to = recipients(alert.institution_id, alert.kind)
    if not to:
        log.warning("No recipients for a %s alert of %r: alert only logged", alert.kind, alert.institution_id)
        return None
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    return SmtpNotifier(
        to=to, subject=alert.subject, html_content=_html(alert), smtp_conn_id=SMTP_CONN_ID,
        custom_headers={"X-GradeFlow-Alert": alert.kind, "X-GradeFlow-Institution": alert.institution_id or ""},
    )


def send(alert: Alert, context: dict | None = None) -> bool:
    """Log the alert and e-mail it to the institution's recipients; True when the mail was handed over."""
    notifier = _prepare(alert)
    if notifier is None:
        return False
    try:
        # notify(), not __call__: our text is not a Jinja template and must not be rendered as one.
        notifier.notify(context or {})
    except Exception as exc:  # a broken mail server must not turn into a second failure
        log.error("Alert e-mail to %s not sent (connection %s): %s", notifier.to, SMTP_CONN_ID, exc)
        return False
    log.info("Alert e-mail [%s] sent to %s", alert.kind, ", ".join(notifier.to))
    return True


async def asend(alert: Alert, context: dict | None = None) -> bool:
    """`send` for the triggerer (deadline alerts): the provider's async SMTP path."""
    notifier = _prepare(alert)
    if notifier is None:
        return False
    try:
        await notifier.async_notify(context or {})
    except Exception as exc:
        log.error("Alert e-mail to %s not sent (connection %s): %s", notifier.to, SMTP_CONN_ID, exc)
        return False
    log.info("Alert e-mail [%s] sent to %s", alert.kind, ", ".join(notifier.to))
    return True


def _html(alert: Alert) -> str:
    body = html.escape(alert.body)
    return (f"<html><body><h3>{html.escape(alert.subject)}</h3>"
            f"<pre style=\"font-family: monospace; white-space: pre-wrap\">{body}</pre>"
            "<p>Sent by GradeFlow. Recipients: alert_emails and platform_alert_emails in "
            "include/institutions.yaml.</p></body></html>")


# ---- failed tasks and runs -------------------------------------------------------------------------------

def _institution_of(context: dict) -> str | None:
    """The institution a DAG belongs to (its institution:<id> tag), or the admin form's institution param."""
    dag = context.get("dag")
    for tag in getattr(dag, "tags", None) or ():
        if str(tag).startswith("institution:"):
            return str(tag).split(":", 1)[1]
    params = context.get("params") or {}
    return params.get("institution") or None


def _is_gate_failure(exception: BaseException | None) -> bool:
    """A ReleaseBlocked (any kind), raised as is or as the cause of a no-retry failure."""
    for exc in (exception, getattr(exception, "__cause__", None)):
        if any(c.__name__ == "ReleaseBlocked" for c in type(exc).__mro__):
            return True
    return False


def _is_approval_timeout(exception: BaseException | None) -> bool:
    """The faculty sign-off got no decision in time (gradeflow.airflow.signoff.ApprovalTimedOut)."""
    return any(c.__name__ == "ApprovalTimedOut" for c in type(exception).__mro__)


def cause_of(exception: BaseException | None) -> str:
    """The exception as a cause: its type, its message and the file and line that raised it, then its cause."""
    import traceback

    if exception is None:
        return "no exception reached the callback (the task was killed or timed out): see the task log"
    parts = []
    seen: set[int] = set()
    while exception is not None and id(exception) not in seen and len(parts) < 3:
        seen.add(id(exception))
        frames = traceback.extract_tb(exception.__traceback__) if exception.__traceback__ else []
        where = f" (raised in {frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
        parts.append(f"{type(exception).__name__}: {exception}{where}")
        exception = exception.__cause__ or (None if exception.__suppress_context__ else exception.__context__)
    return "\n  caused by ".join(parts)


def exam_day_of(context: dict, institution_id: str | None) -> str:
    """The exam day a failed run worked on, by the rule the tasks use (gradeflow.core.config.last_cut_day)."""
    from gradeflow.core.config import last_cut_day

    params = context.get("params") or {}
    if params.get("exam_day"):
        return str(params["exam_day"])
    dag = context.get("dag")
    if str(getattr(dag, "dag_id", "")).endswith("__ingest"):
        return "every day folder waiting under incoming/ (ingest)"
    run = context.get("dag_run")
    when = getattr(run, "logical_date", None) or getattr(run, "run_after", None)
    if when is None or not institution_id:
        return "unknown"
    try:
        return str(last_cut_day(when, get_institution(institution_id).timezone))
    except ConfigError:
        return "unknown"


def failure_alert(context: dict, scope: str) -> Alert:
    """The message for a failed task (scope 'task') or DAG run (scope 'run'), naming the cause."""
    inst = _institution_of(context)
    dag = context.get("dag")
    dag_id = getattr(dag, "dag_id", None) or getattr(context.get("dag_run"), "dag_id", "?")
    run = context.get("dag_run")
    run_id = getattr(run, "run_id", "?")
    day = exam_day_of(context, inst)
    exception = context.get("exception")
    who = f"institution {inst}" if inst else "admin"
    if scope == "task":
        ti = context.get("task_instance") or context.get("ti")
        task_id = getattr(ti, "task_id", "?")
        kind = ("gate_failed" if _is_gate_failure(exception) else
                "approval_timed_out" if _is_approval_timeout(exception) else "task_failed")
        subject = (f"[GradeFlow] {inst or 'admin'} {day}: release gate failed, nothing released ({dag_id})"
                   if kind == "gate_failed" else
                   f"[GradeFlow] {inst or 'admin'} {day}: no faculty decision in time, nothing released to students"
                   if kind == "approval_timed_out" else
                   f"[GradeFlow] {inst or 'admin'} {day}: task {task_id} of {dag_id} failed"
                   + (f" ({type(exception).__name__})" if exception else ""))
        lines = [f"{who}, exam day {day}: DAG {dag_id}, run {run_id}, task {task_id}, "
                 f"try {getattr(ti, 'try_number', '?')}.", "", f"Cause: {cause_of(exception)}", ""]
        log_url = getattr(ti, "log_url", None)
        if log_url:
            lines.append(f"Log: {log_url}")
        if kind == "approval_timed_out":
            lines.append("What to do: the institution's release is out; students got nothing. To release it to "
                         f"students, clear {task_id} in the Airflow UI (it asks faculty again) and approve it.")
        elif kind != "gate_failed":
            lines.append("What to do: fix the cause named above; clear the task (every step is idempotent).")
        return Alert(inst, kind, subject, "\n".join(lines))
    reason = context.get("reason") or (cause_of(exception) if exception else "a task failed")
    subject = f"[GradeFlow] {inst or 'admin'} {day}: run of {dag_id} failed"
    body = (f"{who}, exam day {day}: DAG {dag_id}, run {run_id} ended failed: {reason}.\n\nThe failed task's own "
            "alert names its exception.\n\nWhat to do: open the run in the Airflow UI, fix the cause and clear the "
            "failed task (reruns are safe).")
    return Alert(inst, "run_failed", subject, body)


class FailureNotifier(BaseNotifier):
    """on_failure_callback for tasks (scope 'task') and DAG runs (scope 'run'): e-mail the cause."""

    def __init__(self, scope: str = "task") -> None:
        super().__init__()
        self.scope = scope

    def __deepcopy__(self, memo: dict) -> FailureNotifier:
        return self  # stateless: every task shares it (operators deep-copy their callbacks at parse time)

    def notify(self, context: Any) -> None:
        send(failure_alert(dict(context), self.scope), context)


# ---- the release gate ------------------------------------------------------------------------------------

_STATES = (("graded_rule", "graded by rule"), ("graded_llm", "by the model"), ("graded_human", "by a person"),
           ("in_review", "in review"), ("deferred", "deferred to the next night"),
           ("pending_model", "waiting for the model"), ("received", "received, not yet prepared"))


def gate_failure_message(institution_id: str, day: date | str, failures: list[str], counts: dict,
                         diagnosis: dict | None = None) -> tuple[str, str]:
    """Subject and body for a failed release gate, from the gate's failure list and the day's counts.

    `counts` is publish.day_counts (answers and one count per answer state; states it lacks are left out);
    `diagnosis` (optional) is the row of publish/unaccounted.sql: answers without exactly one outcome, by
    question, and the work still open for the day.
    """
    diagnosis = diagnosis or {}
    answers = int(counts.get("answers") or 0)
    present = [(key, label) for key, label in _STATES if key in counts]
    accounted = sum(int(counts[key] or 0) for key, _ in present)
    unaccounted = int(diagnosis.get("unaccounted", max(answers - accounted, 0)))
    twice = int(diagnosis.get("counted_twice", max(accounted - answers, 0)))
    problems = ([f"{unaccounted} of {answers} answers without an outcome"] if unaccounted else []) + (
        [f"{twice} counted twice"] if twice else [])
    subject = (f"[GradeFlow] {institution_id} {day}: release gate failed, nothing released"
               + (f" ({', '.join(problems)})" if problems else ""))
    states = "; ".join(f"{label} {int(counts[key] or 0)}" for key, label in present)
    lines = [f"The release gate for {institution_id}, exam day {day}, failed: nothing was released.", "",
             f"Answers: {answers}; {states}; without an outcome {unaccounted}; with more than one {twice}."]
    causes, todo = _causes(institution_id, diagnosis)
    if diagnosis.get("by_question") and (unaccounted or twice):
        shown = ", ".join(f"{q['question']} ({q['answers']})" for q in diagnosis["by_question"])
        lines += ["", f"Answers without exactly one outcome, by question (most first): {shown}."]
    if twice:
        causes.insert(0, f"{twice} answer(s) have more than one outcome: a current grade and an open review "
                         "item, or two current grades")
        todo.insert(0, "Resolve the stale review item or grade of those answers (gradeflow__admin_rerun with "
                       "scope question regrades them cleanly), then clear validate_grades.")
    if unaccounted:
        causes.insert(0, f"{unaccounted} answer(s) have no outcome at all: no grade, no review item, no "
                         "visible wait; this is a data fault")
        todo.insert(0, "Rerun prepare for this exam_day (it grades or queues every answer), then clear "
                       "validate_grades.")
    if causes:
        lines += ["", "Found:"] + [f"- {c}" for c in causes]
    lines += ["", "Checks that failed:"] + [f"- {f}" for f in failures or ["(none listed)"]]
    todo = todo or ["Read the publish log and the validation_runs row; fix the cause; clear validate_grades."]
    lines += ["", "What to do:"] + [f"- {t}" for t in todo]
    return subject, "\n".join(lines)


def _causes(inst: str, diagnosis: dict) -> tuple[list[str], list[str]]:
    causes, todo = [], []
    running = diagnosis.get("batches_running") or []
    if running:
        ids = ", ".join(f"{b['batch_id']} ({b['status']})" for b in running[:10])
        causes.append(f"{len(running)} Batch API batch(es) not collected yet: {ids}")
        todo.append(f"Let {inst}__grade finish (or clear its collect_results task once the batch ended), "
                    "then clear validate_grades here.")
    queued, pending = int(diagnosis.get("requests_queued") or 0), int(diagnosis.get("requests_pending") or 0)
    not_sent = int(diagnosis.get("jobs_not_submitted") or 0)
    if queued or pending or not_sent:
        causes.append(f"model requests still waiting: {pending} pending (not in a batch file), {queued} queued "
                      f"in batches; {not_sent} batch job(s) written but never submitted")
        todo.append(f"Run {inst}__grade for this exam_day (trigger it with the exam_day param) so the work "
                    "is sent and collected, then clear validate_grades.")
    files = diagnosis.get("files_rejected") or []
    if files:
        causes.append(f"file(s) rejected at ingest: {', '.join(files[:10])} (see rejects/ and rejected_rows)")
        todo.append("Have the institution re-send the corrected file(s); the ingest sweep loads them.")
    return causes, todo


def gate_failure_alert(institution_id: str, day: date | str, failures: list[str], counts: dict,
                       diagnosis: dict | None = None) -> Alert:
    subject, body = gate_failure_message(institution_id, day, failures, counts, diagnosis)
    return Alert(institution_id, "gate_failed", subject, body)


# ---- review share ----------------------------------------------------------------------------------------

def _pct(share: float) -> str:
    return f"{share * 100:.3g}%"  # 35%, 20%, 0.0561%: small shares stay readable


def review_share_alert(institution_id: str, day: date | str, counts: dict, threshold: float,
                       by_reason: dict | None = None, version: int | None = None) -> Alert | None:
    """An alert when more than `threshold` of the day's answers wait in review, else None; it names the review
    reasons that fired (open items by reason, gradeflow.review.packets) and the released version."""
    answers, in_review = int(counts.get("answers") or 0), int(counts.get("in_review") or 0)
    if not answers or in_review / answers <= threshold:
        return None
    share = in_review / answers
    subject = (f"[GradeFlow] {institution_id} {day}: {_pct(share)} of answers wait in human review "
               f"(alert above {_pct(threshold)})")
    fired = sorted((by_reason or {}).items(), key=lambda item: (-int(item[1]), item[0]))
    reasons = ("Reasons: " + ", ".join(f"{reason} {int(n):,}" for reason, n in fired) + ".") if fired else (
        "Reasons: see review_queue.reason for the day.")
    released = f" (release v{version})" if version else ""
    body = (f"{in_review:,} of {answers:,} answers of {institution_id}, exam day {day}{released}, wait in human "
            f"review ({_pct(share)}; the alert threshold review_alert_share is {_pct(threshold)}).\n\n{reasons}\n\n"
            "What to do: low_confidence dominating means min_confidence is above what the model gives (choose it "
            "with the threshold table: make thresholds INST=<id>, the daily report, or gradeflow.admin.evaluate); "
            "refused, truncated or unparseable output points at the prompt; "
            "attempts_exhausted at the Batch API. Have reviewers grade the packet under reviews/; their file "
            "releases a new version.")
    return Alert(institution_id, "review_share", subject, body)


# ---- rejected files ---------------------------------------------------------------------------------------

def rejects_alert(institution_id: str, reports: list[str], rows_rejected: int, run_id: str) -> Alert:
    """One mail per ingest sweep: the rejects reports it wrote, as links, for the institution to fix and re-send."""
    from gradeflow.core.config import bucket

    days = sorted({key.split("/")[2] for key in reports if key.count("/") >= 3})
    subject = (f"[GradeFlow] {institution_id} {', '.join(days)}: {len(reports)} file(s) with rejected rows or "
               "refused whole")
    links = "\n".join(f"- s3://{bucket()}/{key}" for key in reports)
    body = (f"Institution {institution_id}, exam day(s) {', '.join(days)}, ingest run {run_id}: {len(reports)} "
            f"file(s) had rows refused ({rows_rejected:,} row(s); a file refused whole counts one line). Each "
            f"report names the file, row, field, value and reason:\n{links}\n\nGood rows of the same files were "
            "loaded. What to do: correct the refused rows and drop the corrected file under incoming/ again "
            "(rows already loaded are not loaded twice; docs/file-contract.md).")
    return Alert(institution_id, "file_rejected", subject, body)


# ---- faculty sign-off ----------------------------------------------------------------------------------

def students_rejected_alert(institution_id: str, day: Any, version: Any, who: str, run_id: str) -> Alert:
    """A faculty member rejected the day for students: the institution's release stands, students get nothing."""
    subject = f"[GradeFlow] {institution_id} {day}: release v{version} rejected for students by {who}"
    body = (f"Institution {institution_id}, exam day {day}, release v{version}, publish run {run_id}: {who} rejected "
            "the release to students in the Airflow UI. Nothing was written for students; the institution's own "
            "release (faculty and exam office) is unchanged.\n\nWhat to do: fix what was wrong (an admin rerun "
            "regrades and releases a new version, which asks again), or, to release this version after all, clear "
            "ask_faculty_approval in the run and approve it.")
    return Alert(institution_id, "students_rejected", subject, body)


# ---- release deadline (Airflow deadline alert, run by the triggerer) --------------------------------------

def _deadline_run(dag_run: dict | None) -> tuple[str, Any]:
    """(run id, logical date) of the run in a deadline callback's context (Airflow's DAGRunResponse as JSON)."""
    from datetime import datetime

    run = dag_run or {}
    when = run.get("logical_date") or run.get("run_after")
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return str(run.get("dag_run_id") or run.get("run_id") or "?"), when


def deadline_alert(institution_id: str, deadline_local: str, dag_run: dict | None = None) -> Alert:
    """The message for results not released by the institution's release_deadline."""
    from gradeflow.core.config import last_cut_day

    run = dag_run or {}
    run_id, when = _deadline_run(run)
    day = str(last_cut_day(when, get_institution(institution_id).timezone)) if when else "unknown"
    subject = f"[GradeFlow] {institution_id} {day}: results not released by {deadline_local} local time"
    body = (f"Institution {institution_id}, exam day {day}: the publish run {run_id} of "
            f"{run.get('dag_id', institution_id + '__publish')} (state {run.get('state', '?')}) had not released the "
            f"day's results by {deadline_local} ({institution_id}'s time zone).\n\nWhat to do: open the run in the "
            f"Airflow UI; if validate_grades failed, its alert says why; if grading is still running, check "
            f"{institution_id}__grade; once fixed, clear validate_grades (a release is written only when the gate "
            "passes).")
    return Alert(institution_id, "deadline_missed", subject, body)


def _day_has_answers(institution_id: str, when: Any) -> bool:
    """Whether the exam day of a late publish run still waits for its results: it has answers and no release yet
    (an empty day has nothing to be late with; a released day waiting for the faculty's sign-off before students
    is not late: the institution has its results)."""
    from gradeflow.core import db
    from gradeflow.core.config import last_cut_day
    from gradeflow.release import publish

    inst = get_institution(institution_id)
    day = last_cut_day(when, inst.timezone)
    with db.connect(institution=inst.id) as conn:
        if not publish.has_answers(conn, inst, day):
            return False
        return not db.fetch_all(conn, "publish/last_release", {"inst": inst.id, "day": day})


async def release_deadline_missed(institution_id: str, deadline_local: str, context: dict | None = None) -> bool:
    """Deadline-alert callback (AsyncCallback, in the triggerer): e-mail that results are late.

    Not for a day without answers (nothing to release is never late: a run created after the deadline of an
    empty day, after an outage, stays quiet), nor for a day already released whose run still waits for the
    faculty's sign-off before students; when the database cannot say, the alert goes out."""
    import asyncio

    run = (context or {}).get("dag_run") or {}
    run_id, when = _deadline_run(run)
    if when is not None:
        try:
            if not await asyncio.to_thread(_day_has_answers, institution_id, when):
                log.info("Deadline passed for %s run %s, but its exam day has no answers or is released (students "
                         "may still wait for the faculty's sign-off): no alert", institution_id, run_id)
                return False
        except Exception as exc:  # the alert matters more than the check
            log.warning("Could not check the day of %s run %s (%s): alerting anyway", institution_id, run_id, exc)
    return await asend(deadline_alert(institution_id, deadline_local, run), None)
