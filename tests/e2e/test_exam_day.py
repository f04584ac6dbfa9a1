"""End to end: one institution's whole day through Airflow (`dag.test()` of its four DAGs by `devstack.demo`, in the
e2e modules' Airflow child with the demo's own Airflow metadata database on the embedded PostgreSQL:
tests/e2e/conftest.py), then the promises."""

from __future__ import annotations

import io
import json
from datetime import date

import pyarrow.parquet as pq
import pytest

from gradeflow.core.config import get_institution
from gradeflow.release import publish

# The demo runs first in the child the sign-off and trigger modules share (tests/e2e/conftest.py).
pytestmark = [pytest.mark.e2e, pytest.mark.runs_with("tests/e2e/test_signoff_airflow.py")]
DAY = "2026-11-23"


@pytest.fixture(scope="module")
def day_through_airflow(airflow_api_child):
    """(the demo's --output folder, its output): `python -m devstack.demo --institutions northfield --submissions 25
    --approval-institution northfield --day 2026-11-23 --keep` on the worker's stack, run in the child."""
    return airflow_api_child["demo"]


def test_every_dag_run_succeeds_and_the_day_is_released(day_through_airflow):
    out, log = day_through_airflow
    summary = json.loads((out / "summary.json").read_text())["northfield"][DAY]
    # v1 at 06:00; the demo's reviewers answer the packet, the ingest DAG applies it, v2 carries human grades.
    assert summary["released"] is True and summary["release_version"] == 2 and summary["released_versions"] == [1, 2]
    assert summary["answers"] == (summary["graded_rule"] + summary["graded_llm"] + summary["graded_human"]
                                  + summary["in_review"])
    assert summary["graded_llm"] > 0 and summary["graded_rule"] > 0 and summary["rejected_rows"] > 0
    assert summary["routed_by_reason"].get("low_confidence", 0) > 0 and summary["review_packets"]
    assert summary["graded_human"] == summary["answers_graded_by_human"] > 0
    assert summary["review_rows_rejected"] == 2 and summary["agreement"]["n"] > 0
    assert "failed: none" in log
    # The faculty sign-off: each version waited in Airflow and was approved through the HITL API.
    assert summary["student_release"] == "after_faculty_approval"
    assert [(c["version"], c["approved_by"]) for c in summary["students_copies"]] == [(1, "faculty.demo"),
                                                                                     (2, "faculty.demo")]
    assert "approved by faculty.demo through Airflow's HITL API (HTTP 200)" in log
    for name in ("results-v1.parquet", "results-v2.parquet", "submissions-v2.parquet", "students/v2/_manifest.json"):
        assert list((out / "releases" / "northfield" / DAY).glob(name)), name
    # A receipt (JSON and CSV) per submissions file, copied out of S3 and counted in summary.json.
    receipts = sorted((out / "receipts" / "northfield" / DAY).glob("*.json"))
    assert receipts and summary["receipts"] == 2 * len(receipts)
    assert {"sha256", "status", "submissions"} <= set(json.loads(receipts[0].read_text()))


def test_conservation_and_export_match_the_database(day_through_airflow, embedded_stack):
    import boto3

    from devstack import stack
    from gradeflow.airflow import tasks

    s3 = boto3.client("s3", **stack.s3_client_kwargs(embedded_stack))  # not the fixture: it empties the bucket
    inst = get_institution("northfield")
    with tasks.open_db("northfield") as conn:
        counts = publish.day_counts(conn, inst, date.fromisoformat(DAY))
        batches = conn.execute("SELECT count(*), sum(input_tokens), sum(cost_usd) FROM batch_jobs "
                               "WHERE collected_at IS NOT NULL").fetchone()
    assert counts["answers"] == counts["graded_rule"] + counts["graded_llm"] + counts["graded_human"] + \
        counts["in_review"]
    assert batches[0] >= 1 and batches[1] > 0 and batches[2] > 0
    key = f"releases/northfield/{DAY}/results-v2.parquet"
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket="gradeflow", Key=key)["Body"].read()))
    assert table.num_rows == counts["answers"]
    assert set(table.column("institution_id").to_pylist()) == {"northfield"}
    assert not [k for k in _all_keys(s3) if "/lakeshore/" in k or "/rheinwald/" in k]


def test_airflow_knows_only_the_institutions_the_demo_ran(airflow_api_child):
    """`--institutions northfield`: the demo's DAG folder makes northfield's four DAGs and the admin DAG, not every
    institution's (each dag.test() parses the folder and writes every DAG it makes to the metadata database). The
    DAGs Airflow's REST API listed as the demo ended (test_trigger_api's serialises every institution's later)."""
    dags = set(airflow_api_child["result"]["demo_dags"])
    assert dags == {f"northfield__{s}" for s in ("ingest", "prepare", "grade", "publish")} | {"gradeflow__admin_rerun"}


def test_the_audit_sample_is_scored_and_measured_in_the_summary(day_through_airflow):
    out, _ = day_through_airflow
    summary = json.loads((out / "summary.json").read_text())["northfield"][DAY]
    found = summary["audit"]
    # Drawn at the grade run, scored blind by the demo's reviewers with the routed items, measured with intervals.
    assert found["items_today"] > 0 and found["items_to_date"].get("reviewed", 0) == found["unreviewed_model"]["n"] > 0
    figures = found["unreviewed_model"]
    low, high = figures["within_tolerance_ci95"]
    assert 0 <= low <= figures["within_tolerance"] <= high <= 1 and found["tolerance_points"] == 0.5
    assert figures["mae_ci95"][0] <= figures["mae"] <= figures["mae_ci95"][1]
    assert found["routed"]["n"] > 0 and found["per_question"]
    share = summary["review_share"]
    assert share["routed_answers"] == sum(summary["routed_by_reason"].values()) and share["audited_answers"] > 0
    assert share["share_with_audits"] == round((share["routed_answers"] + share["audited_answers"])
                                               / share["free_text_answers"], 4)
    results = pq.read_table(out / "releases" / "northfield" / DAY / "results-v2.parquet").to_pylist()
    origins = {(r["grader"], r["origin"]) for r in results}
    assert {("rule", "rule"), ("llm", "model"), ("human", "audit"), ("human", "routed")} <= origins
    assert all(r["suggested_score"] is not None for r in results if r["origin"] == "audit")


def _all_keys(s3):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="gradeflow")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_the_demo_leaves_the_daily_report_with_airflow_timings(day_through_airflow):
    out, _ = day_through_airflow
    page = (out / "reports" / "northfield" / DAY / "report-v1.html").read_text()
    assert 'id="plot-states"' in page and 'id="plot-timings"' in page and 'id="plot-task-durations"' in page
    # Task durations come from Airflow's own records of this day's four DAG runs.
    for task in ("ingest · ingest_files", "prepare · build_batches", "grade · grade_night",
                 "publish · validate_grades", "publish · publish_release"):
        assert task in page, task
