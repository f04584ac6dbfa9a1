"""Fixtures on the real embedded stack: PostgreSQL (pgserver), S3 (moto server), the Batch API emulator.

The stack is started once per test session in a temporary folder, with the same code `make demo`
uses; every test gets empty tables, an empty bucket and a reset emulator. Under pytest-xdist (`make test`)
each worker is its own session, so each worker starts its own stack (its own folder, free ports, database,
bucket and emulator) the first time one of its tests asks for it: workers never share a table. The unit
tier (tests/unit/conftest.py) starts nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devstack import stack

# Airflow reads its plugins folder once, at import: the project's, so DAGs with GradeFlow's registered timetable
# serialize in tests as they do under the scheduler (plugins/gradeflow_plugin.py).
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(Path(__file__).resolve().parents[1] / "plugins"))


@pytest.fixture(scope="session")
def embedded_stack():
    """Start the embedded stack for the session and export its connections as AIRFLOW_CONN_* variables.

    Its folder is outside pytest's basetemp: pytest keeps only the 3 newest `pytest-N` folders of a user,
    so another session starting meanwhile would delete a running PostgreSQL's data under it.
    """
    import shutil
    import tempfile

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")  # gw0, gw1, ... under pytest-xdist
    state_dir = Path(tempfile.mkdtemp(prefix=f"gradeflow-devstack-{worker}-"))
    info = stack.up(state_dir, emulator_timing_scale=0.02)
    saved = dict(os.environ)
    os.environ.update(stack.env(info))
    os.environ["GRADEFLOW_BATCH_POLL_SECONDS"] = "0.2"
    yield info
    os.environ.clear()
    os.environ.update(saved)
    stack.down(state_dir)
    shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def s3(embedded_stack):
    """A boto3 client on the embedded S3, with an empty bucket."""
    import boto3

    client = boto3.client("s3", **stack.s3_client_kwargs(embedded_stack))
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.BUCKET):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=stack.BUCKET, Key=item["Key"])
    return client


@pytest.fixture
def admin_conn(embedded_stack):
    """The owner role's connection (sees every institution): for setup and cross-institution assertions only."""
    connection = stack.connect_as(embedded_stack, stack.OWNER_ROLE, autocommit=True)
    yield connection
    connection.close()


@pytest.fixture
def tenant_conn(embedded_stack, admin_conn):
    """Open worker connections bound to one institution each, as the night's tasks do: tenant_conn("lakeshore")."""
    from gradeflow.core import db

    opened = []

    def open_for(institution_id: str):
        opened.append(db.connect(institution=institution_id))
        return opened[-1]

    yield open_for
    for connection in opened:
        connection.close()


@pytest.fixture
def conn(admin_conn, tenant_conn):
    """The night's connection for northfield (worker role, bound to it), on a migrated database with every
    table emptied. Work on another institution goes through tenant_conn(<id>), as in the tasks.

    The stack's start migrated the database; after the TRUNCATE one migrate re-seeds the institutions and
    review reasons and re-applies grants and row-level security (a test may have changed them)."""
    from gradeflow.core import db

    tables = [r[0] for r in admin_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
    admin_conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    db.migrate(admin_conn)  # re-seed the institutions table
    return tenant_conn("northfield")


@pytest.fixture
def emulator(embedded_stack):
    """The Batch API emulator's control endpoint, reset; returns a helper to set faults."""
    import httpx

    base = f"http://127.0.0.1:{embedded_stack.openai_port}"
    httpx.post(f"{base}/_emulator/reset", timeout=10).raise_for_status()

    class Control:
        url = base

        @staticmethod
        def faults(**knobs):
            httpx.post(f"{base}/_emulator/faults", json=knobs, timeout=10).raise_for_status()

        @staticmethod
        def stats() -> dict:
            return httpx.get(f"{base}/_emulator/stats", timeout=10).json()

    return Control


@pytest.fixture
def openai_client(embedded_stack):
    """The official SDK client pointed at the emulator, built the way the pipeline builds it."""
    from gradeflow.grading.providers.openai_batch import client as build

    return build()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return Path(__file__).resolve().parents[1]
