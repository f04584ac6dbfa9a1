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


def test_the_tests_throwaway_cluster_skips_fsync_and_hashes_passwords_cheaply(embedded_stack):
    """The suite's cluster (GRADEFLOW_STACK_NONDURABLE=1, tests/conftest.py) is thrown away: no fsync, and its
    passwords hashed with few SCRAM iterations (each of the suite's thousands of logins runs them on both sides);
    logins over TCP still need the right password."""
    import psycopg
    import pytest

    with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        assert su.execute("SHOW fsync").fetchone()[0] == "off"
        assert su.execute("SHOW scram_iterations").fetchone()[0] == str(stack.THROWAWAY_SCRAM_ITERATIONS) == "16"
        verifier = su.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (stack.OWNER_ROLE,)).fetchone()
    assert verifier[0].startswith("SCRAM-SHA-256$16:")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=embedded_stack.pg_port, user=stack.OWNER_ROLE, password="wrong",
                        dbname=stack.GRADEFLOW_DB, connect_timeout=10)
