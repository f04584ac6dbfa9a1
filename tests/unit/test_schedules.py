"""Stage DAGs' timetables: the first run is a future slot, never a past one; a slot missed later still runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gradeflow.core.config import load_institutions

UTC = ZoneInfo("UTC")
STAGES = ("ingest", "prepare", "grade", "publish")


@pytest.fixture(scope="module")
def dagbag(project_root, tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(project_root / "dags" / "institution_dags.py"))
    assert not bag.import_errors
    return bag


def _core(dag):
    """The timetable the scheduler computes with, after the DAG went through serialization (as in Airflow)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable


def _cron_timetable(timetable):
    return getattr(timetable, "timetable", timetable)  # publish: AssetOrTimeSchedule around the cron


def _restriction(dag):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup)


def test_the_issue_example_airflows_own_timetable_runs_the_past_slot():
    """What the issue measured: CronTriggerTimetable gives the latest past slot as a new DAG's first run."""
    from airflow.timetables.base import TimeRestriction
    from airflow.timetables.trigger import CronTriggerTimetable

    from gradeflow.airflow.timetables import LocalCronTimetable

    now = datetime(2026, 12, 7, 1, 10, tzinfo=UTC)
    restriction = TimeRestriction(earliest=datetime(2026, 1, 1, tzinfo=ZoneInfo("Asia/Kolkata")), latest=None,
                                  catchup=False)
    ours = LocalCronTimetable("0 18 * * *", timezone="Asia/Kolkata")
    assert ours.next_run_from(now, None, restriction).run_after == datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
    # Airflow's own, asked the same (its clock is real): the latest past slot, before now.
    theirs = CronTriggerTimetable("0 18 * * *", timezone="Asia/Kolkata").next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction)
    assert theirs.run_after < datetime.now(UTC)


@pytest.mark.parametrize("stage", STAGES)
def test_every_dags_first_run_from_now_is_a_future_slot(dagbag, stage):
    from gradeflow.airflow.timetables import FIRST_RUN_GRACE

    for inst in load_institutions():
        dag = dagbag.dags[f"{inst.id}__{stage}"]
        timetable = _core(dag)
        now = datetime.now(UTC)
        info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(dag))
        # Future, or a slot that passed within the grace (a parse right at the slot must not skip it).
        assert info.run_after > now - FIRST_RUN_GRACE, (dag.dag_id, info.run_after)
        # And exactly the next slot: no slot lies between the grace and the first run.
        cron = _cron_timetable(timetable)
        assert cron._align_to_next(now - FIRST_RUN_GRACE) == info.run_after, dag.dag_id
        # With a fixed clock (the issue's): strictly the next slot after now.
        fixed = datetime(2026, 12, 7, 1, 10, tzinfo=UTC)
        first = cron.next_run_from(fixed, None, _restriction(dag)).run_after
        assert first > fixed and cron._get_prev(first) <= fixed, dag.dag_id


@pytest.mark.parametrize(("stage", "local_slots"), [
    ("prepare", ["2026-12-05 18:00", "2026-12-06 18:00"]),
    ("publish", ["2026-12-05 06:00", "2026-12-06 06:00"]),
    ("ingest", ["2026-12-05 17:45", "2026-12-06 17:45"]),
])
def test_a_slot_missed_during_an_outage_still_runs_when_the_scheduler_returns(dagbag, stage, local_slots):
    """The DAG ran at its slot on the 5th; the scheduler was down over the 6th's slot; it returns at 23:00 local."""
    from airflow.timetables.base import DataInterval

    zone = ZoneInfo("Asia/Kolkata")
    dag = dagbag.dags[f"lakeshore__{stage}"]
    cron = _cron_timetable(_core(dag))
    ran, missed = (datetime.strptime(s, "%Y-%m-%d %H:%M").replace(tzinfo=zone) for s in local_slots)
    back = datetime(2026, 12, 6, 23, 0, tzinfo=zone)
    info = cron.next_run_from(back, DataInterval(ran, ran), _restriction(dag))
    assert info.run_after == missed  # a past slot, run at once
    if stage == "ingest":
        return  # every 15 minutes: an hour before the 6th's last slot there are other slots
    # Back before the missed slot: it simply waits for it.
    early = cron.next_run_from(missed - timedelta(hours=1), DataInterval(ran, ran), _restriction(dag))
    assert early.run_after == missed


def test_the_ui_shows_each_schedule_with_its_time_zone(dagbag):
    prepare = _core(dagbag.dags["lakeshore__prepare"])
    assert prepare.summary == "0 18 * * * (Asia/Kolkata)"
    assert prepare.description.startswith("18:00 Asia/Kolkata (12:30 UTC)")
    publish = _cron_timetable(_core(dagbag.dags["northfield__publish"]))
    assert "America/New_York" in publish.summary and "06:00 America/New_York" in publish.description


def test_the_plugin_registers_the_timetable_for_the_scheduler(project_root, tmp_path):
    """Airflow deserializes a custom timetable only if a plugin registers it: load the plugins folder for real."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json; from airflow import plugins_manager; "
            "print(json.dumps(sorted(plugins_manager.get_timetables_plugins())))")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(project_root / "plugins"),
           "PYTHONPATH": str(project_root / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=True)
    assert "gradeflow.airflow.timetables.LocalCronTimetable" in json.loads(out.stdout.strip().splitlines()[-1])


def test_a_shared_timetable_is_checked_once_and_a_bad_cron_still_fails(dagbag):
    """The DAGs of one (cron, zone) share a timetable; Airflow checks each DAG's timetable as it bags it, and
    LocalCronTimetable parses its cron for the first check only. A bad expression still fails, every time."""
    from airflow.exceptions import AirflowTimetableInvalid

    from gradeflow.airflow.timetables import LocalCronTimetable

    crons = [_cron_timetable(dagbag.dags[f"{i.id}__prepare"].timetable) for i in load_institutions()]
    assert all(t._checked for t in crons)  # DagBag validated them
    bad = LocalCronTimetable("0 25 * * *", timezone="Europe/Berlin")
    for _ in range(2):
        with pytest.raises(AirflowTimetableInvalid):
            bad.validate()
