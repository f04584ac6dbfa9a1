"""`make airflow` after `make demo` starts clean: the demo keeps its own Airflow metadata database and home, so its
dag.test() runs of a past day and its reviews Asset events never reach `make airflow`'s scheduler."""

from __future__ import annotations

from devstack import stack


def test_the_demo_and_make_airflow_use_separate_airflow_metadata(embedded_stack):
    ours, demo = stack.env(embedded_stack), stack.env(embedded_stack, demo=True)
    assert ours["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(f"/{stack.AIRFLOW_DB}")
    assert demo["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(f"/{stack.AIRFLOW_DEMO_DB}")
    assert ours["AIRFLOW_HOME"] != demo["AIRFLOW_HOME"]
    # Everything else (GradeFlow's database, S3, the Batch API, the mail sink) is the same stack.
    same = {k for k in ours if k not in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW_HOME")}
    assert {k: ours[k] for k in same} == {k: demo[k] for k in same}
    # The demo's database exists and its login can use it.
    import psycopg

    url = demo["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == stack.AIRFLOW_DEMO_DB
