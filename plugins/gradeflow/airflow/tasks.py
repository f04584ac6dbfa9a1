"""Task callables: what each Airflow task does, given its institution and its run's context.

Each opens its own connections (from Airflow connection ids), works on one institution and one
exam day, and returns a small JSON manifest of counts for XCom; results live in Postgres and S3.
The exam day comes from the run's logical date in the institution's time zone (or the
`exam_day` param of a manual run), never from the wall clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from gradeflow.core.config import Institution, get_institution, last_cut_day

if TYPE_CHECKING:
    from gradeflow.grading.context import Night

log = logging.getLogger(__name__)


def exam_day_for(context: dict[str, Any], inst: Institution) -> date:
    """The exam day a run works on: its `exam_day` param, else the day named by the reviews Asset event
    that triggered it, else `last_cut_day` of the run's time (logical date, or when it was triggered).

    One rule for prepare (18:00), grade (20:00) and publish (06:00 the morning after), scheduled or triggered
    with an empty form: a same-evening manual chain, or one after local midnight, works on one day."""
    override = (context.get("params") or {}).get("exam_day")
    if override:
        try:
            return date.fromisoformat(override)
        except ValueError as exc:
            raise ValueError(f"param exam_day must be a real date YYYY-MM-DD, got {override!r}: {exc}") from None
    reviewed = _reviewed_days(context)
    if reviewed:
        return max(reviewed)
    dag_run = context["dag_run"]
    when = getattr(dag_run, "logical_date", None) or dag_run.run_after
    return last_cut_day(when, inst.timezone)


def reviews_asset(institution_id: str):
    """The Asset an institution's review ingest emits when reviewers' scores were applied."""
    from airflow.sdk import Asset

    # The x- scheme: Airflow takes it as is (no provider normalises it), so building the Asset at parse time
    # does not load every provider's asset-URI handlers (the AWS SDK among them): 0.3 s per parse of 1,200 DAGs.
    return Asset(f"x-gradeflow://{institution_id}/reviews", group="gradeflow_reviews")


def _reviewed_days(context: dict[str, Any]) -> list[date]:
    """Exam days named by the reviews Asset events that triggered this run (none for a cron or manual run)."""
    days: list[date] = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            days += [date.fromisoformat(d) for d in ((event.extra or {}).get("exam_days") or [])]
    return days


_SCHEMA_CHECKED: set[tuple[str, str]] = set()


def open_db(institution_id: str):
    """A connection bound to one institution, as the worker role; fails clearly if the schema is behind.

    Tasks never migrate (they work as the least-privilege role): the owner's migrate step does.
    """
    from airflow.exceptions import AirflowNotFoundException

    from gradeflow.core import db  # here, not at the top: psycopg is not needed to parse 1,200 DAGs

    try:
        conn = db.connect(institution=institution_id)
    except AirflowNotFoundException as exc:  # an institution added to the file, not set up yet
        raise db.InstitutionNotRegistered(
            f"institution {institution_id!r} is in include/institutions.yaml but its database connection "
            f"{db.tenant_conn_id(institution_id)!r} is not defined. Add it (login {db.tenant_login(institution_id)!r}, "
            "a new random password), then run the migrate step once as the owner role: `python -m "
            "gradeflow.core.db migrate` (the embedded stack: `make migrate`, then restart `make airflow`), and clear "
            "this task. See docs/add-an-institution.md, step 2.") from exc
    checked = (conn.info.dsn, institution_id)
    if checked not in _SCHEMA_CHECKED:
        try:
            db.require_schema(conn)
            db.require_institution(conn, institution_id)  # an institution added without the migrate step
        except (db.SchemaNotMigrated, db.InstitutionNotRegistered):
            conn.close()
            raise
        _SCHEMA_CHECKED.add(checked)
    return conn


@contextmanager
def open_night(inst: Institution, day: date, **options: Any) -> Iterator[Night]:
    """The institution's `Night` for one task: its bound connection (closed at the end) and S3 client, with
    `options` (provider, deadline, recheck_seconds, settings); built once and handed to every grading step."""
    from gradeflow.core import storage
    from gradeflow.grading.context import Night

    with open_db(inst.id) as conn:
        yield Night(inst, day, conn, storage.client(inst.id), **options)


def ingest_files(institution_id: str, **context: Any) -> dict:
    """Sweep the institution's incoming/ files into Postgres; fail (after the others) if any file errored."""
    from gradeflow.core import storage
    from gradeflow.intake.ingest import ingest_institution

    inst = get_institution(institution_id)
    with open_db(inst.id) as conn:
        report = ingest_institution(inst, conn, storage.client(inst.id))
    if report.rejects_reports:  # one mail per sweep, however many files had rejects
        from gradeflow.airflow import alerts

        run = context.get("dag_run")
        alerts.send(alerts.rejects_alert(inst.id, report.rejects_reports, report.rows_rejected,
                                         getattr(run, "run_id", "?")))
    if report.failed:
        raise RuntimeError(f"{len(report.failed)} file(s) could not be ingested and stay in incoming/ for the "
                           f"next sweep (see the log above): {report.failed}")
    return report.as_dict()


def order_submissions(institution_id: str, **context: Any) -> dict:
    """Number the exam day's submissions first-in-first-out."""
    from gradeflow.grading import prepare

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    with open_db(inst.id) as conn:
        return {"exam_day": str(day), "ordered": prepare.order_submissions(conn, inst, day)}


def grade_by_rule(institution_id: str, **context: Any) -> dict:
    """Grade the exam day's objective answers by rule."""
    from gradeflow.grading import prepare

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    with open_db(inst.id) as conn:
        return {"exam_day": str(day), "graded": prepare.grade_by_rule(conn, inst, day)}


def build_batches(institution_id: str, **context: Any) -> dict:
    """Write the exam day's Batch API input files and jobs."""
    from dataclasses import asdict

    from gradeflow.grading import prepare

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    with open_night(inst, day) as night:
        return {"exam_day": str(day), **asdict(prepare.build_batches(night))}


# The grade DAG's work (reconcile, submit in waves under the shared cap, collect, retry with backoff)
# is one deferrable operator: gradeflow.airflow.waiting.GradeNightOperator, stepping gradeflow.grading.night.advance.


def validate_grades(institution_id: str, **context: Any) -> dict:
    """Run the release gate for the exam day; fail the task (nothing released) if it does not pass."""
    from gradeflow.release import publish

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    with open_db(inst.id) as conn:
        if not publish.has_answers(conn, inst, day):
            from airflow.sdk.exceptions import AirflowSkipException

            counts = publish.day_counts(conn, inst, day)
            log.info("no answers for %s %s: nothing to release (%d submissions, %d rejected rows)", inst.id, day,
                     counts["submissions"], counts["rejected_rows"])
            raise AirflowSkipException(f"no answers for {inst.id} {day}: nothing to release")
        gate = _gate(conn, inst, day)
    return {"exam_day": str(day), "validation_id": gate.validation_id, "fingerprint": gate.fingerprint}


@cache
def gate_failed() -> type:
    """`GateFailed`: a ReleaseBlocked that Airflow does not retry (AirflowFailException): a failed gate is not
    an infrastructure error, so the gate tasks keep their retries for those (a database or S3 not up yet)."""
    from airflow.sdk.exceptions import AirflowFailException

    from gradeflow.release.publish import ReleaseBlocked

    class GateFailed(ReleaseBlocked, AirflowFailException):
        """The release gate failed: nothing released; fix the cause, then clear the task."""

    return GateFailed


def _gate(conn: Any, inst: Institution, day: date) -> Any:
    """The release gate for one day; raises ReleaseBlocked with what is unaccounted, why and what to do."""
    from gradeflow.airflow import alerts
    from gradeflow.core import db
    from gradeflow.release import publish

    gate = publish.validate(conn, inst, day)
    if not gate.success:
        diagnosis = db.fetch_all(conn, "publish/unaccounted", {"inst": inst.id, "day": day})[0]
        _, message = alerts.gate_failure_message(inst.id, day, gate.failures, gate.counts, diagnosis)
        raise gate_failed()(message)
    return gate


GATE_RERUNS = 5  # a day still changing after this many gates (grading collecting results) is left to the next run


def release_validated(conn: Any, inst: Institution, day: date, validation_id: int, actor: str) -> dict:
    """Release the validated state; when it changed since the gate (grading still collecting), rerun the gate.

    A retry of the task would meet the same changed state again (the gate is another task): here the gate is
    run again at once, up to GATE_RERUNS times. A gate that now fails, or a state that keeps changing, fails
    the task for good (no retries: clear the run once grading is done, or let the next publish run release it).
    """
    from gradeflow.release import publish

    for attempt in range(1, GATE_RERUNS + 1):
        try:
            return publish.release(conn, inst, day, validation_id, actor=actor)
        except publish.StateChanged as changed:
            log.info("%s (grading still running?): gate %d of %d rerun now", changed, attempt, GATE_RERUNS)
            try:
                validation_id = _gate(conn, inst, day).validation_id
            except publish.ReleaseBlocked as blocked:
                raise gate_failed()(f"the state of {inst.id} {day} changed after the gate, and the gate "
                                           f"run again failed: {blocked}") from blocked
    raise gate_failed()(f"the state of {inst.id} {day} changed under {GATE_RERUNS} gates in a row (grading "
                               f"is still collecting results): nothing released now; the next publish run or "
                               f"republish_changed_days releases it")


def publish_release(institution_id: str, gate: dict, **context: Any) -> dict:
    """Release the validated state (one transaction) and export it to S3 as Parquet."""
    from gradeflow.core import storage
    from gradeflow.release import publish
    from gradeflow.review import packets as review

    inst = get_institution(institution_id)
    day = date.fromisoformat(gate["exam_day"])
    actor = f"{inst.id}__publish"
    s3 = storage.client(inst.id)
    with open_db(inst.id) as conn:
        repaired = publish.repair_exports(conn, s3, inst, actor=actor)
        released = release_validated(conn, inst, day, gate["validation_id"], actor)
        key = publish.export(conn, s3, inst, day, released["release_id"], actor=actor)
        packet = review.write_packet(conn, s3, inst, day)
        counts = publish.day_counts(conn, inst, day)
    if released["new"]:  # once per day and version: a rerun of the same state does not mail again
        _alert_on_review_share(inst, day, counts, packet.by_reason, released["version"])
    return {"exam_day": str(day), "version": released["version"], "new": released["new"], "export_key": key,
            "repaired_releases": repaired, "review_packet": packet.csv_key, "open_review_items": packet.items,
            **{k: (float(v) if k == "cost_usd" else v) for k, v in counts.items()}}


def release_of_run(context: dict) -> dict | None:
    """What publish_release returned in this run (exam_day, version, ...), or None when it released nothing."""
    ti = context.get("ti") or context.get("task_instance")
    return ti.xcom_pull(task_ids="publish_release") if ti is not None else None


def export_for_students(institution_id: str, released: dict | None, **context: Any) -> dict:
    """Write the released version for students (their own results only), after the institution's sign-off step.

    Runs after publish_release (auto), after the faculty's approval (after_faculty_approval; skipped on Reject)
    or after the deferred wait (at HH:MM). Nothing released in this run: nothing to do."""
    from gradeflow.core import storage
    from gradeflow.release import students

    inst = get_institution(institution_id)
    released = released or release_of_run(context)
    if not released:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("publish_release released nothing in this run: nothing for students")
    day, version = date.fromisoformat(released["exam_day"]), int(released["version"])
    ti = context.get("ti")
    decision = ti.xcom_pull(task_ids="ask_faculty_approval") if ti is not None and inst.needs_faculty_approval else None
    s3 = storage.client(inst.id)
    with open_db(inst.id) as conn:
        manifest = students.export_for_students(conn, s3, inst, day, version, actor=f"{inst.id}__publish",
                                                decision=decision)
    return {"exam_day": str(day), "version": version, "students": manifest["students"],
            "folder": manifest["folder"], "approved_by": manifest["approved_by"]}


def write_report(institution_id: str, **context: Any) -> dict:
    """Write the day's HTML report to reports/<prefix>/<day>/ (after the release, whether or not it passed)."""
    from gradeflow.core import storage
    from gradeflow.release import report

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    timings = report.airflow_stage_timings(context, inst, day)
    with open_db(inst.id) as conn:
        key = report.write_report(conn, storage.client(inst.id), inst, day, timings)
    return {"exam_day": str(day), "report_key": key, "airflow_runs_timed": len(timings)}
def republish_changed_days(institution_id: str, **context: Any) -> dict:
    """Release a new version of every earlier day whose state changed since its last release.

    Late answers, carried-over (deferred) work and batches collected after a deadline change days
    other than yesterday: each such day goes through the same gate, gets a new version (only if its
    state differs from its last release) and a new Parquet export.
    """
    from gradeflow.core import db, storage
    from gradeflow.release import publish

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    released, blocked = [], []
    with open_db(inst.id) as conn:
        days = [r["exam_day"] for r in db.fetch_all(conn, "publish/changed_days", {"inst": inst.id, "day": day})]
        s3 = storage.client(inst.id) if days else None
        for other in days:
            gate = publish.validate(conn, inst, other)
            if not gate.success:
                blocked.append(f"{other}: " + "; ".join(gate.failures))
                continue
            result = publish.release(conn, inst, other, gate.validation_id)
            if result["new"]:
                publish.export(conn, s3, inst, other, result["release_id"])
                released.append(f"{other} v{result['version']}")
    log.info("Republish %s: %d earlier day(s) changed since their last release; new versions: %s", inst.id,
             len(days), ", ".join(released) or "none")
    if blocked:
        raise publish.ReleaseBlocked("release gate failed for earlier day(s), nothing released for them: "
                                     + " | ".join(blocked))
    return {"days_checked": [str(d) for d in days], "released": released}


def write_review_packet(institution_id: str, **context: Any) -> dict:
    """Draw the night's audit sample and write the exam day's open review items (blind) to
    reviews/<prefix>/<day>/open-<timestamp>.csv/.parquet."""
    from gradeflow.core import storage
    from gradeflow.review import packets as review

    inst = get_institution(institution_id)
    day = exam_day_for(context, inst)
    with open_db(inst.id) as conn:
        packet = review.write_packet(conn, storage.client(inst.id), inst, day)
    return {"exam_day": str(day), "items": packet.items, "answers": packet.answers, "by_reason": packet.by_reason,
            "audit_items": packet.audit, "csv_key": packet.csv_key, "parquet_key": packet.parquet_key}


def announce_reviews(institution_id: str, **context: Any) -> dict:
    """Emit the institution's reviews Asset (naming the exam day) when reviewers' scores were applied; else skip.

    The event schedules `<id>__publish` (beside its 06:00 cron), so human grades are released as a new
    version without an admin.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    from gradeflow.review import packets as review

    inst = get_institution(institution_id)
    with open_db(inst.id) as conn:
        days = review.announce_reviews(conn, inst)
    if not days:
        raise AirflowSkipException("no reviews applied since the last announcement")
    context["outlet_events"][reviews_asset(inst.id)].extra = {"exam_days": days}
    log.info("Reviews applied for %s %s: the publish DAG is scheduled by %s", inst.id, days,
             reviews_asset(inst.id).uri)
    return {"exam_days": days}


def _alert_on_review_share(inst: Institution, day: date, counts: dict, by_reason: dict, version: int) -> None:
    """E-mail the institution when an unusual share of the day's answers waits in human review."""
    from gradeflow.airflow import alerts

    alert = alerts.review_share_alert(inst.id, day, counts, inst.review_alert_share, by_reason, version)
    if alert:
        alerts.send(alert)


def rerun_params(params: dict, now_utc: Any) -> dict:
    """The admin form with its dry-run conveniences filled in: an empty exam_day means yesterday (local) and
    an empty reason is allowed, only for a dry run; a real run must name both (the message says which)."""
    params = dict(params)
    dry_run = bool(params.get("dry_run", True))
    if not params.get("exam_day"):
        if not dry_run:
            raise ValueError("exam_day is required for a real run (dry_run off): give the day as YYYY-MM-DD")
        inst = get_institution(str(params["institution"]))
        params["exam_day"] = str(now_utc.astimezone(inst.tz).date() - timedelta(days=1))
    if not (params.get("reason") or "").strip():
        if not dry_run:
            raise ValueError("reason is required for a real run (dry_run off): say why in at least 10 characters")
        params["reason"] = "dry run (no reason given)"
    return params


def stage_dags_paused(institution_id: str, start_stage: str, is_paused: Any) -> list[str]:
    """The stage DAGs a rerun from start_stage would trigger that are paused (is_paused(dag_id) -> bool)."""
    from gradeflow.admin.rerun import STAGES

    wanted = [f"{institution_id}__{stage}" for stage in STAGES[STAGES.index(start_stage):]]
    return [dag_id for dag_id in wanted if is_paused(dag_id)]


def _is_paused_via_airflow(context: dict) -> Any:
    """is_paused(dag_id) from Airflow's metadata, through the task SDK (tasks have no ORM access)."""
    ti = context.get("ti") or context.get("task_instance")
    return lambda dag_id: bool(ti.get_dag(dag_id).is_paused)


def reset_for_rerun(**context: Any) -> dict:
    """Admin rerun, step 1: validate the form, refuse if a stage DAG to trigger is paused, record the audit
    line, supersede the scope's grades. Every refusal is audited too, then fails the task with its reason."""
    from datetime import UTC, datetime

    from gradeflow.admin.rerun import RerunRefused, RerunRequest, record_refusal, reset_scope

    dag_run = context["dag_run"]
    requested_by = getattr(dag_run, "triggering_user_name", None) or "unknown"
    params = dict(context["params"])

    def refuse(reason: Exception) -> None:
        inst = get_institution(str(params.get("institution")))
        with open_db(inst.id) as conn:
            record_refusal(conn, inst.id, requested_by, {**{k: str(v) for k, v in params.items()},
                                                         "exam_day": None, "run_id": dag_run.run_id}, str(reason))

    try:
        request = RerunRequest.from_params(rerun_params(params, datetime.now(UTC)), requested_by,
                                           run_id=dag_run.run_id)
    except ValueError as invalid:  # refused by the form's checks
        refuse(invalid)
        raise
    inst = get_institution(request.institution)
    if not request.dry_run:
        paused = stage_dags_paused(inst.id, request.stage, _is_paused_via_airflow(context))
        if paused:
            refused = RerunRefused(f"refused: {', '.join(paused)} {'is' if len(paused) == 1 else 'are'} paused, so "
                                   "the rerun would wait for it until its timeout. Unpause it in the Airflow UI (or "
                                   "start at a later stage), then trigger the rerun again. Nothing was changed.")
            refuse(refused)
            raise refused
    with open_db(inst.id) as conn:
        result = reset_scope(conn, inst, request)
    return {**result, "institution": inst.id, "exam_day": str(request.exam_day), "stage": request.stage}
