"""gradeflow.core.storage.client: the S3 client built from the Airflow connection (issue 18, the export)."""

from __future__ import annotations

import contextlib
import gc
import json

import pytest

from gradeflow.core import storage

ENDPOINT = "http://127.0.0.1:9"  # never contacted: building a client makes no request


def _connection(password: str) -> str:
    return json.dumps({"conn_type": "aws", "login": "key", "password": password,
                       "extra": {"endpoint_url": ENDPOINT, "region_name": "us-east-1"}})


@pytest.fixture
def s3_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GRADEFLOW_S3", _connection("warm-up"))
    storage.client()  # the modules imported, as in a task by the time it builds its client
    # Another connection, so the test's call builds a client (one per connection and process is kept).
    monkeypatch.setenv("AIRFLOW_CONN_GRADEFLOW_S3", _connection("secret"))
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*thresholds)
    if enabled:
        gc.enable()


@contextlib.contextmanager
def collections():
    """The generations of every cyclic collection started inside the block, with a collection due at every
    allocation (thresholds of 1), so a build that let the collector run would certainly show one."""
    started: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.set_threshold(1, 1, 1)
    gc.callbacks.append(record)
    try:
        yield started
    finally:
        gc.callbacks.remove(record)


def test_building_the_client_runs_no_cyclic_collection(s3_connection):
    """botocore parses 1.2 MB of endpoint data into OrderedDicts for every new session; with the collector on,
    those allocations set off full collections over everything the task imported (0.25-0.8 s of the export)."""
    gc.enable()
    with collections() as started:
        client = storage.client()
    assert started == []
    assert gc.isenabled()  # the collector runs again afterwards
    assert client.meta.endpoint_url == ENDPOINT and client.meta.region_name == "us-east-1"
    assert client._request_signer._credentials.secret_key == "secret"  # built now, not the warm-up's


def test_a_paused_collector_stays_paused(s3_connection):
    gc.disable()
    with collections() as started:
        storage.client()
    assert not gc.isenabled() and started == []
