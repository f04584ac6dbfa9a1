"""Factory: four DAGs per institution in include/institutions.yaml, on the institution's own clock.

    <id>__ingest   every 15 min, 08:00-17:45 local   sweep incoming/ into Postgres
    <id>__prepare  18:00 local                         cut-off sweep, FIFO, rule grading, Batch API files
    <id>__grade    20:00 local                         submit batches, wait deferred, collect results
    <id>__publish  06:00 local, next morning           GX gate, release, Parquet export

Wiring only: every task calls a function of gradeflow.airflow.tasks. Policy (unpaused at creation, no catchup,
failure e-mails, the publish deadline alert) comes from gradeflow.airflow.policy.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import cache

import pendulum
from airflow.sdk import DAG, AssetOrTimeSchedule, TriggerRule

from gradeflow.airflow import tasks
from gradeflow.airflow.policy import (
    DAG_POLICY,
    DEFAULT_ARGS,
    add_exam_day,
    building_many_dags,
    config_defaults,
    local_schedule,
    release_deadline,
    tags,
)
from gradeflow.airflow.policy import python_task as task  # @task's shape, half its parse cost (1,200 DAGs)
from gradeflow.airflow.timetables import LocalCronTimetable
from gradeflow.airflow.waiting import GradeNightOperator
from gradeflow.core.config import BATCH_API_POOL, CUTOFF_AT, PUBLISH_AT, SCHEDULES, Institution, load_institutions

POLL_SECONDS = float(os.environ.get("GRADEFLOW_BATCH_POLL_SECONDS", "60"))
BACKOFF = os.environ.get("GRADEFLOW_RETRY_BACKOFF_SECONDS")  # unset: each institution's retry_backoff_seconds
RERUN = (
    "\n\n**Rerun**: clearing any task or the whole run is safe (every step is idempotent). To work on "
    "another day, trigger with the `exam_day` param (`YYYY-MM-DD`). Left empty, every stage takes the same day: "
    f"the last exam day whose {CUTOFF_AT} local cut-off has passed (today from 18:00, yesterday before), which is "
    "the day the scheduled run works on, so an empty-form ingest, prepare, grade, publish chain releases "
    "the day it graded; "
    "to regrade, use `gradeflow__admin_rerun`."
)
INGEST_RERUN = (
    "\n\n**Rerun**: clearing or triggering is safe (a file is loaded once). This DAG has no `exam_day` "
    "param: every sweep takes every file waiting under `incoming/`, whatever its day folder, so a late file "
    "for an earlier day is loaded too. To work on one day, trigger `prepare` with its `exam_day`."
)
POLICY = (
    "\n\n**Pause and alerts**: created unpaused; the first run is the next scheduled slot, never a past one "
    "(also when Airflow starts on a fresh database). Catchup is off: after a scheduler outage the latest "
    "missed slot runs once when the scheduler returns. "
    "Failed tasks and runs e-mail the institution's `alert_emails`."
)
DOCS = {
    "ingest": "Sweeps `incoming/{p}/<day>/` (exams, then submissions in arrival order) into Postgres: every "
              "row validated, bad rows to `rejects/{p}/<day>/*.rejects.csv` and `rejected_rows`, a receipt per "
              "submissions file (accepted submission ids, recorded `submitted_at`, sha256) to "
              "`receipts/{p}/<day>/`, originals "
              "archived under `archive/{p}/`, a file dropped twice loaded once. Contract: docs/file-contract.md.",
    "prepare": "The 18:00 cut-off for the day: a final ingest sweep, submissions numbered first-in-first-out, "
               "objective answers graded by rule, free-text answers merged (identical answers once) into "
               "Batch API requests, JSONL input files written to `batches/{p}/<day>/` (at most 50,000 requests "
               "and 200 MB each). Work deferred on earlier nights goes first, then tonight's, first-in-first-out; "
               "admission stops at the first request over the night's token budget (exact input tokens, "
               "expected output learned from recent use) and the rest is deferred to the next night, never "
               "to review. Answers of earlier days that arrived after their cut-off are graded tonight.",
    "grade": "One deferrable task, `grade_night`, runs the night in waves and holds no worker while it waits. "
             "Each step first reconciles with the Batch API: every open job of the institution, from any "
             "earlier night, is reattached (by batch id, or by its fingerprint in the batch metadata whatever "
             "the batch's status) and collected once finished, so nothing is sent or paid twice. Jobs are "
             "submitted in order while the organisation's enqueued-token cap and the institution's share of it "
             "have room; the next goes when an earlier batch finishes. Results are joined by `custom_id`: "
             "grades for good lines, human review for refused, cut or unparseable ones and invalid requests; "
             "lines that expired, were cancelled, rate-limited or hit a server error go out again (only those "
             "lines) after an exponential backoff, up to `max_attempts` (3), then to review "
             "(`attempts_exhausted`); a batch refused for the token cap is requeued, not reviewed. Tokens "
             "and cost, estimated and actual, are kept per line, job, attempt, day and night. A model grade "
             "below the institution's `min_confidence` (from token log-probabilities where the model gives "
             "them), with a raw score outside [0, max], or with a rubric item's evidence quote not in the "
             "answer, goes to review with the model's answer as a suggestion; `write_review_packet` then "
             "draws the night's audit sample (`audit_rate` of each question's model grades released without "
             "a human, at least `audit_min_per_question`; still released) and writes the open review items to "
             "a blind packet `reviews/{p}/<day>/open-<timestamp>.csv`.\n\n"
             "**Deadline policy**: model work stops at 05:45 local. The 06:00 release goes out regardless, "
             "with unfinished answers `pending` (reason `pending_model`); a `GRADEFLOW ALERT grade deadline` "
             "log line names the batches still running. They are not cancelled: the next grade run collects "
             "them, and publish releases the day again as a new version.",
    "publish": "For the previous day's exams: Great Expectations suites (`expectations/`) check one outcome "
               "per answer, scores in range and conservation. Only if they pass is the day released (one "
               "transaction, a new version only if grades changed) and exported to "
               "`releases/{p}/<day>/results-v<N>.parquet` (one row per answer) and `submissions-v<N>.parquet` "
               "(one row per submission), with the model/human agreement in `reports/{p}/<day>/agreement-v<N>.json`; "
               "if grading changed the day between the gate and the release, `publish_release` runs the gate "
               "again at once (never a retry into the same refusal); "
               "the release is visible only once its files are written (a cut-off export is finished by the next "
               "run). A failed gate releases nothing, fails here and "
               "e-mails which answers are unaccounted and why. A day with no answers is skipped "
               "(\"nothing to release\"), never released empty. Results not released by {deadline} local time "
               "raise a deadline alert; more than {share:.0%} of answers in review raise an alert. "
               "Unfinished work does not block: it is released `pending` with its "
               "reason (`pending_model`, "
               "`deferred_budget`, `in_review`, ...). Then `republish_changed_days` releases a new version of "
               "every earlier day whose state changed since its last release (late answers, carried-over "
               "work, batches collected after a deadline). The open review "
               "items are written to `reviews/{p}/<day>/open-<timestamp>.csv` for reviewers.\n\n"
               "**Also scheduled by** the Asset `x-gradeflow://{id}/reviews`: when `{id}__ingest` applies a reviewers' "
               "file (`incoming/{p}/<day>/reviews/`), its `announce_reviews` task emits that Asset with the exam "
               "day, and this DAG runs for that day at once: the human grades are released as a new version "
               "without an admin (docs/review-round-trip.md).",
}
STUDENTS_DOC = {
    "auto": "**Students** (`student_release: auto`): `export_for_students` writes each student's own results to "
            "`releases/{p}/<day>/students/v<N>/` right after the release.",
    "after_faculty_approval": "**Students** (`student_release: after_faculty_approval`): `ask_faculty_approval` writes "
            "the day's report and waits in the Airflow UI (**Required actions**) for a faculty member's Approve or "
            "Reject, the report linked; only after Approve does `export_for_students` write each student's own results "
            "to `releases/{p}/<day>/students/v<N>/`. Reject: nothing for students, the institution is e-mailed. No "
            "decision within {hours:g} h: the task fails (not retried), nothing for students, the institution is "
            "e-mailed; clear `ask_faculty_approval` to ask again. Who decided is in the task's Required actions "
            "record and in `audit_log` (docs/releases.md).",
    "at": "**Students** (`student_release: at {at}`): `wait_for_student_release` waits deferred (no worker held) "
          "until {at} local the morning after the exam day, then `export_for_students` writes each student's own "
          "results to `releases/{p}/<day>/students/v<N>/`.",
}
REPORT_DOC = ("Writes the day's HTML report (counts, score distributions, answer states, review reasons, tokens "
              "and cost, stage timings, agreement) to `reports/<prefix>/<day>/report-v<N>.html`. A teardown: it "
              "runs after a failed gate too, and its own failure does not fail the run.")


@cache
def _timetable(cron: str, timezone: str, label: str) -> LocalCronTimetable:
    """One timetable per (cron, zone), shared by the DAGs that use it: they are immutable, parsing cron is not free.

    Its first run is the next slot from now, never a past one (gradeflow.airflow.timetables)."""
    return LocalCronTimetable(cron, timezone=timezone, label=label)


@cache
def _start_date(timezone: str):
    return pendulum.datetime(2026, 1, 1, tz=timezone)


def _dag(inst: Institution, stage: str, timeout: timedelta, assets: list | None = None, extra_doc: str = "",
         **extra) -> DAG:
    when = label = local_schedule(inst.timezone, *SCHEDULES[stage].times)
    if stage == "ingest":
        when = f"every 15 min {when}"
    elif stage == "publish":
        when = f"{when}, the morning after the exam day"
    text = DOCS[stage].format(p=inst.s3_prefix, id=inst.id, deadline=inst.release_deadline,
                              share=inst.review_alert_share)
    doc = (f"# {inst.name}: {stage}\n\n{text}{extra_doc}\n\n**Schedule**: {when} (the UI shows UTC)."
           + (INGEST_RERUN if stage == "ingest" else RERUN) + POLICY)
    cron_schedule = _timetable(SCHEDULES[stage].cron, inst.timezone, label)
    return DAG(
        dag_id=f"{inst.id}__{stage}",
        description=f"{stage} for {inst.name}: {when}",
        doc_md=doc,
        schedule=AssetOrTimeSchedule(timetable=cron_schedule, assets=assets) if assets else cron_schedule,
        start_date=_start_date(inst.timezone),
        dagrun_timeout=timeout,
        # An institution with its own Celery queue: every task of its DAGs goes there, to workers that hold only
        # its connections (docs/scale-out.md); otherwise Airflow's default queue.
        default_args={**DEFAULT_ARGS, "queue": inst.queue} if inst.queue else DEFAULT_ARGS,
        tags=tags(stage, inst.id),
        **DAG_POLICY,
        **config_defaults(),
        **extra,
    )


def ingest_dag(inst: Institution) -> DAG:
    with _dag(inst, "ingest", timedelta(minutes=30)) as dag:
        sweep = task(task_id="ingest_files")(tasks.ingest_files)(institution_id=inst.id)
        # Reviewers' scores applied (by this sweep or an earlier one): tell the publish DAG (Asset event).
        sweep >> task(task_id="announce_reviews", trigger_rule=TriggerRule.ALL_DONE,
                      outlets=[tasks.reviews_asset(inst.id)])(tasks.announce_reviews)(institution_id=inst.id)
    return dag


def prepare_dag(inst: Institution) -> DAG:
    with _dag(inst, "prepare", timedelta(hours=2)) as dag:
        sweep = task(task_id="ingest_files")(tasks.ingest_files)(institution_id=inst.id)
        # A file the sweep could not load stays in incoming/ and fails the sweep, visibly; the
        # night's grading of everything that did load goes on regardless.
        order = task(task_id="order_submissions", trigger_rule=TriggerRule.ALL_DONE)(tasks.order_submissions)(
            institution_id=inst.id)
        rules = task(task_id="grade_by_rule")(tasks.grade_by_rule)(institution_id=inst.id)
        batches = task(task_id="build_batches")(tasks.build_batches)(institution_id=inst.id)
        sweep >> order >> rules >> batches
    return add_exam_day(dag)


def grade_dag(inst: Institution) -> DAG:
    with _dag(inst, "grade", timedelta(hours=11)) as dag:
        # One deferrable task runs the night's bounded loop of waves (reconcile, submit under the shared
        # enqueued-token cap, collect, retry with backoff) and holds no worker while it waits. In the pool
        # `openai_batch_api` (create it with --include-deferred, so a waiting night keeps its slot): the pool
        # bounds how many institutions talk to the API at once; the token cap itself is held by a
        # reservation ledger in Postgres (gradeflow.grading.night.reserve), across every institution.
        grade_night = GradeNightOperator(
            task_id="grade_night", institution_id=inst.id, pool=BATCH_API_POOL, poll_interval=POLL_SECONDS,
            recheck_seconds=max(POLL_SECONDS * 5, 1.0), execution_timeout=timedelta(hours=10, minutes=30),
            retry_backoff_seconds=float(BACKOFF) if BACKOFF else None,
        )
        grade_night >> task(task_id="write_review_packet", trigger_rule=TriggerRule.ALL_DONE)(
            tasks.write_review_packet)(institution_id=inst.id)
    return add_exam_day(dag)


def _students_wait(inst: Institution) -> timedelta:
    """How long the publish run may wait for the students' release on top of its own two hours."""
    if inst.needs_faculty_approval:
        return timedelta(hours=inst.faculty_approval_hours)
    if inst.student_release_at:
        at = int(inst.student_release_at[:2]) * 60 + int(inst.student_release_at[3:])
        return timedelta(minutes=at - int(PUBLISH_AT[:2]) * 60 - int(PUBLISH_AT[3:]))
    return timedelta(0)


def _students_step(inst: Institution, released):
    """The students' release after the institution's (gradeflow.airflow.signoff): at once, after a faculty
    member's approval in the Airflow UI, or at the institution's local time. Returns the export task."""
    export = task(task_id="export_for_students")(tasks.export_for_students)
    if inst.needs_faculty_approval:
        from gradeflow.airflow.signoff import FacultyApprovalOperator

        gate = FacultyApprovalOperator(task_id="ask_faculty_approval", institution_id=inst.id)
    elif inst.student_release_at:
        from gradeflow.airflow.signoff import StudentReleaseWait

        gate = StudentReleaseWait(task_id="wait_for_student_release", institution_id=inst.id,
                                  execution_timeout=_students_wait(inst) + timedelta(minutes=30))
    else:
        return export(institution_id=inst.id, released=released)
    released >> gate
    exported = export(institution_id=inst.id, released=released)
    gate >> exported
    return exported


def publish_dag(inst: Institution) -> DAG:
    kind = "at" if inst.student_release_at else inst.student_release
    students_doc = "\n\n" + STUDENTS_DOC[kind].format(p=inst.s3_prefix, hours=inst.faculty_approval_hours,
                                                       at=inst.student_release_at)
    with _dag(inst, "publish", timedelta(hours=2) + _students_wait(inst), assets=[tasks.reviews_asset(inst.id)],
              deadline=release_deadline(inst), extra_doc=students_doc) as dag:
        # Retries (the DAG's default) are for infrastructure errors (the database or S3 not up yet): a failed
        # gate raises GateFailed, which Airflow does not retry.
        gate = task(task_id="validate_grades")(tasks.validate_grades)(institution_id=inst.id)
        released = task(task_id="publish_release")(tasks.publish_release)(institution_id=inst.id, gate=gate)
        # A teardown: runs whether or not the day was released, and its failure never fails the run.
        report = task(task_id="write_report", retries=1, retry_delay=timedelta(minutes=1), doc_md=REPORT_DOC)(
            tasks.write_report)(institution_id=inst.id)
        # The students' copy (gradeflow.airflow.signoff), then the report, which says whether students have the day.
        _students_step(inst, released) >> report.as_teardown()
        # Earlier days whose state changed (late answers, carried-over work, batches collected late): also a
        # teardown, so it runs whatever yesterday's gate said and the run's state stays publish_release's;
        # a failed gate of an earlier day fails this task visibly (alert line), releasing nothing for it.
        republish = task(task_id="republish_changed_days")(tasks.republish_changed_days)(institution_id=inst.id)
        released >> republish.as_teardown()
    return add_exam_day(dag)


with building_many_dags():  # no garbage collection while 4 DAGs per institution are built
    for _inst in load_institutions():
        for _factory in (ingest_dag, prepare_dag, grade_dag, publish_dag):
            _built = _factory(_inst)
            globals()[_built.dag_id] = _built
