"""The review loop's wiring: the reviews Asset schedules publish beside its cron; grade ends with a packet."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest

from gradeflow.airflow import tasks
from gradeflow.core.config import get_institution, load_institutions


@pytest.fixture(scope="module")
def dags(project_root, tmp_path_factory):
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(project_root / "dags"))
    assert not bag.import_errors
    return bag.dags


def test_publish_runs_on_its_cron_or_when_reviews_land(dags):
    from airflow.sdk import AssetOrTimeSchedule

    for inst in load_institutions():
        publish = dags[f"{inst.id}__publish"]
        assert isinstance(publish.timetable, AssetOrTimeSchedule)
        assert f"x-gradeflow://{inst.id}/reviews" in str(publish.timetable.asset_condition)
        assert publish.timetable.timetable.expression == "0 6 * * *"
        assert "Asset" in publish.doc_md and "review" in publish.doc_md
        announce = dags[f"{inst.id}__ingest"].get_task("announce_reviews")
        assert [o.uri for o in announce.outlets] == [f"x-gradeflow://{inst.id}/reviews"]
        assert announce.upstream_task_ids == {"ingest_files"}
        packet = dags[f"{inst.id}__grade"].get_task("write_review_packet")
        assert packet.upstream_task_ids == {"grade_night"}


def test_an_asset_triggered_run_works_on_the_reviewed_day():
    inst = get_institution("northfield")
    event = SimpleNamespace(extra={"exam_days": ["2026-11-20"]})
    run = SimpleNamespace(logical_date=None, run_after=None)
    context = {"dag_run": run, "triggering_asset_events": {tasks.reviews_asset(inst.id): [event]}}
    assert tasks.exam_day_for(context, inst) == date(2026, 11, 20)
    context["params"] = {"exam_day": "2026-11-21"}  # a manual exam_day still wins
    assert tasks.exam_day_for(context, inst) == date(2026, 11, 21)
