"""Triggers for test_trigger_api: Airflow's own FastAPI app, in process, on the embedded stack's metadata
database. Triggers each DAG through POST /api/v2/dags/{id}/dagRuns with its defaults (and a few bad forms). Run by
tests/e2e/signoff_child.py after the demo's day and the sign-off scenarios (`--trigger-api`: one Airflow process for
the e2e modules, tests/e2e/conftest.py), once it has serialised every institution's DAGs; run alone (`python
tests/e2e/trigger_api_child.py`, the stack's environment set) it migrates the metadata database and serialises the
DAGs first, and prints one `RESULT {json}` line with the responses."""

from __future__ import annotations

import json
import sys

from devstack.airflow_cli import airflow_cli


def trigger_every_dag() -> dict:
    """Trigger each DAG in the metadata database with its defaults and a few bad forms; the API's answers."""
    from devstack.hitl import api_client

    client = api_client("operator")  # Airflow's core API app in process, with a token for the user
    dag_ids = sorted(d["dag_id"] for d in client.get("/api/v2/dags", params={"limit": 100}).json()["dags"])
    out = {"dags": {}, "bad": {}, "paused": {}}
    for dag_id in dag_ids:
        response = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": {}})
        out["dags"][dag_id] = {"status": response.status_code, "body": response.json()}
        out["paused"][dag_id] = client.get(f"/api/v2/dags/{dag_id}").json().get("is_paused")
    for name, dag_id, conf in (("bad_day", "northfield__prepare", {"exam_day": "23/11/2026"}),
                               ("bad_scope", "gradeflow__admin_rerun", {"scope": "class"}),
                               ("given_day", "northfield__publish", {"exam_day": "2026-11-23"})):
        response = client.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        out["bad"][name] = {"status": response.status_code, "body": response.json()}
    return out


def main() -> int:
    airflow_cli("db", "migrate")
    airflow_cli("dags", "reserialize")
    print("RESULT " + json.dumps(trigger_every_dag(), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
