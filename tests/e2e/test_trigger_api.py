"""Every DAG can be triggered through Airflow's REST API (POST /api/v2/dags/{dag_id}/dagRuns) with its
defaults, as the UI's trigger form does; a bad value is refused with a message naming it. Airflow's own
FastAPI app runs in process (fastapi.testclient), in a child process with its own Airflow settings on
the embedded PostgreSQL, like the end-to-end day: the sign-off e2e's child (tests/e2e/trigger_api_child.py run by
tests/e2e/signoff_child.py after its scenarios, tests/e2e/conftest.py), so this module runs on that module's worker."""

from __future__ import annotations

import json

import pytest

from gradeflow.core.config import load_institutions

pytestmark = [pytest.mark.e2e, pytest.mark.runs_with("tests/e2e/test_signoff_airflow.py")]


@pytest.fixture(scope="module")
def api(airflow_api_child):
    return airflow_api_child["result"]["trigger_api"]


def test_every_dag_accepts_a_run_with_its_defaults(api):
    expected = {f"{i.id}__{s}" for i in load_institutions() for s in ("ingest", "prepare", "grade", "publish")}
    assert set(api["dags"]) == expected | {"gradeflow__admin_rerun"}
    for dag_id, response in api["dags"].items():
        assert response["status"] == 200, (dag_id, response["body"])
        assert response["body"]["state"] == "queued" and response["body"]["logical_date"] is None, dag_id


def test_new_dags_are_created_unpaused(api):
    assert api["paused"] and not any(api["paused"].values()), api["paused"]


def test_a_bad_value_is_refused_with_a_message_and_a_good_one_accepted(api):
    assert api["bad"]["bad_day"]["status"] == 400
    assert "exam_day" in json.dumps(api["bad"]["bad_day"]["body"])
    assert api["bad"]["bad_scope"]["status"] == 400
    assert "is not one of" in json.dumps(api["bad"]["bad_scope"]["body"])
    assert api["bad"]["given_day"]["status"] == 200
    assert api["bad"]["given_day"]["body"]["conf"] == {"exam_day": "2026-11-23"}
