"""Shared DAG policy: default_args, approved tags, the failure notifiers, the pause policy. A test enforces them.

Pause policy: every GradeFlow DAG is created **unpaused** (`is_paused_upon_creation=False`), whatever
`dags_are_paused_at_creation` says: a new institution is live as soon as it is listed, which is safe
because its first run is the next scheduled slot, never a past one (gradeflow.airflow.timetables), catchup
is off, and a day without answers is never published. Pause a DAG in the UI to stop it; the admin rerun
refuses to trigger a paused stage DAG.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache
from typing import Any

from gradeflow.airflow.alerts import FailureNotifier
from gradeflow.core.config import STAGES

OWNER = "gradeflow-data-eng"
TAG_STAGES = (*STAGES, "admin")  # a DAG's stage: tag
PAUSED_UPON_CREATION = False

notify_failure = FailureNotifier("task")  # e-mails the institution's alert_emails (see gradeflow.airflow.alerts)
notify_run_failure = FailureNotifier("run")


DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(minutes=45),
    "on_failure_callback": notify_failure,
}


DAG_POLICY: dict[str, Any] = {
    "catchup": False,
    "max_active_runs": 1,
    "is_paused_upon_creation": PAUSED_UPON_CREATION,
    "on_failure_callback": notify_run_failure,
}


@lru_cache(maxsize=1)
def config_defaults() -> dict[str, Any]:
    """The DAG arguments Airflow would read from its config for every DAG, read once per parse (1,200 DAGs)."""
    from airflow.sdk.configuration import conf

    return {
        "max_active_tasks": conf.getint("core", "max_active_tasks_per_dag"),
        "max_consecutive_failed_dag_runs": conf.getint("core", "max_consecutive_failed_dag_runs_per_dag"),
        "disable_bundle_versioning": conf.getboolean("dag_processor", "disable_bundle_versioning"),
    }


def tags(stage: str, institution_id: str | None = None) -> list[str]:
    """Tags from the approved set: gradeflow, stage:<name>, institution:<id>."""
    if stage not in TAG_STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return ["gradeflow", f"stage:{stage}"] + ([f"institution:{institution_id}"] if institution_id else [])


DAY_FORMAT = r"^(\d{4}-\d{2}-\d{2})?$"  # empty, or YYYY-MM-DD


def python_task(task_id: str, **operator_kwargs: Any) -> Any:
    """`python_task(task_id=...)(fn)(**kwargs)`: the shape of `airflow.sdk.task`, built as a classic PythonOperator.

    Same task, same XCom (the return value), same context passed to `**context`; about half the parse
    cost of the decorator, which matters at 1,200 DAGs (see devstack/bench_parse.py). Returns the
    task's XComArg, so results chain (`gate=gate`), map (`.expand(job=jobs)`) and order (`a >> b`).
    """
    from airflow.providers.standard.operators.python import PythonOperator

    def bind(python_callable):
        def call(**op_kwargs: Any):
            return PythonOperator(task_id=task_id, python_callable=python_callable, op_kwargs=op_kwargs,
                                  **operator_kwargs).output
        return call
    return bind


def exam_day_param(description: str | None = None) -> Any:
    """The optional `exam_day` trigger field: nullable, so the form can be left empty (gradeflow.airflow.tasks.
    exam_day_for: one rule for prepare, grade and publish)."""
    from gradeflow.core.config import CUTOFF_AT

    description = description or (
        f"Leave empty for the last exam day whose {CUTOFF_AT} cut-off has passed in the institution's time zone "
        f"(today from {CUTOFF_AT}, yesterday before): the same day for prepare, grade and publish, the day the "
        "scheduled runs work on. Format YYYY-MM-DD (the institution's local exam day), e.g. 2026-11-23, to "
        "(re)run another day.")
    from airflow.sdk import Param

    # Draft-07 is declared because checking a schema against it costs a third of the default draft's
    # check, and Airflow checks every DAG's params at parse time (1,200 DAGs: see devstack/bench_parse.py).
    return Param(None, type=["null", "string"], pattern=DAY_FORMAT, title="Exam day (YYYY-MM-DD, optional)",
                 description=description, **{"$schema": "http://json-schema.org/draft-07/schema#"})


@lru_cache(maxsize=1)
def _checked_exam_day() -> Any:
    param = exam_day_param()
    param.resolve()  # the check Airflow makes of each scheduled DAG's params (its default against its schema)
    return param


def add_exam_day(dag: Any) -> Any:
    """Give a built stage DAG its `exam_day` trigger field; call it after the DAG's tasks are built. Returns the DAG.

    The field is the same for the 900 DAGs that have it (prepare, grade, publish at 300 institutions), so its
    default is checked against its schema once per parse (`_checked_exam_day`) instead of once per DAG, and each
    DAG gets its own copy through `ParamsDict.__setitem__`, which stores a `Param` as given. Added after the tasks,
    it is not deep-copied into each of the DAG's operators twice (Airflow copies a DAG's params into every
    operator built inside it): a task still reads it, because Airflow merges the DAG's params into every task's
    `params` when the task runs (`airflow.sdk.definitions.param.process_params`), and the trigger form, the REST
    API and the serialized DAG read the DAG's params. Both were about a third of the parse time of 1,200 DAGs
    (devstack/bench_parse.py).
    """
    dag.params["exam_day"] = copy.copy(_checked_exam_day())
    return dag


@contextmanager
def building_many_dags() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a DAG file builds its DAGs, then restore it as it was.

    Building 1,200 DAGs (about 4,000 operators) allocates objects that all stay alive; the collector, run every
    700 allocations, walked them again and again and freed nothing (about a fifth of the parse time at 300
    institutions). Reference counting frees memory as usual meanwhile; the next collection after the block
    finds whatever cycles were left.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@lru_cache(maxsize=4096)
def local_schedule(timezone: str, *times: str) -> str:
    """'18:00 Asia/Kolkata (12:30 UTC)' or '06:00 Europe/Berlin (05:00 UTC; 04:00 UTC in summer time)'."""
    from datetime import date, datetime
    from zoneinfo import ZoneInfo

    zone, utc = ZoneInfo(timezone), ZoneInfo("UTC")
    year = date.today().year
    local = "-".join(times)

    def in_utc(month: int) -> tuple[str, bool]:
        shown = []
        for hhmm in times:
            at = datetime(year, month, 15, int(hhmm[:2]), int(hhmm[3:]), tzinfo=zone)
            shown.append(at.astimezone(utc).strftime("%H:%M"))
        return "-".join(shown), bool(datetime(year, month, 15, 12, tzinfo=zone).dst())

    (jan, jan_dst), (jul, _) = in_utc(1), in_utc(7)
    if jan == jul:
        return f"{local} {timezone} ({jan} UTC)"
    standard, summer = (jul, jan) if jan_dst else (jan, jul)
    return f"{local} {timezone} ({standard} UTC; {summer} UTC in summer time)"


def release_deadline(inst: Any) -> Any:
    """Deadline alert for the publish DAG: results not released by the institution's local release_deadline.

    Measured from the run's logical date (the 06:00 local publish run); the triggerer e-mails the
    institution through gradeflow.airflow.alerts.release_deadline_missed. A run that succeeded before the
    deadline clears it; manual runs (no logical date) have none.
    """
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    from gradeflow.airflow.alerts import release_deadline_missed
    from gradeflow.core.config import PUBLISH_AT

    minutes = (int(inst.release_deadline[:2]) * 60 + int(inst.release_deadline[3:])
               - int(PUBLISH_AT[:2]) * 60 - int(PUBLISH_AT[3:]))
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(minutes=minutes),
        callback=AsyncCallback(release_deadline_missed,
                               kwargs={"institution_id": inst.id, "deadline_local": inst.release_deadline}),
        name=f"{inst.id} results released by {inst.release_deadline} local",
    )
