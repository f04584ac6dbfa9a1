"""SDK clients are cheap to ask for again: the OpenAI clients of a process share one TLS context, and the S3 client
of a connection is built once per process while the connection is unchanged (issue 13 item 6: building them was
~25 ms and ~150 ms of CPU each, paid by every task step and every test that asked for one)."""

from __future__ import annotations

import asyncio
import json

import pytest

from gradeflow.core import storage
from gradeflow.grading.providers import openai_batch


def _s3_connection(password: str, endpoint: str = "http://127.0.0.1:9") -> str:
    return json.dumps({"conn_type": "aws", "login": "testing", "password": password,
                       "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}})


@pytest.fixture
def connections(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_GRADEFLOW_OPENAI", json.dumps(
        {"conn_type": "openai", "host": "http://127.0.0.1:9/v1", "password": "sk-unit"}))
    monkeypatch.setenv("AIRFLOW_CONN_GRADEFLOW_S3", _s3_connection("first"))
    monkeypatch.setenv("AIRFLOW_CONN_GRADEFLOW_S3_NORTHFIELD", _s3_connection("northfield-own"))
    return monkeypatch


def _tls(sdk):
    return sdk._client._transport._pool._ssl_context


def test_openai_clients_share_one_tls_context_and_keep_the_sdks_defaults(connections):
    import openai

    first, second = openai_batch.client(), openai_batch.client()
    assert first is not second and first._client is not second._client  # each its own connection pool
    assert _tls(first) is _tls(second) is openai_batch.tls_context()
    assert str(first.base_url) == "http://127.0.0.1:9/v1/" and first.api_key == "sk-unit"
    assert first.timeout == openai.DEFAULT_TIMEOUT and first.max_retries == openai.DEFAULT_MAX_RETRIES
    assert first._client.follow_redirects and not first._client.is_closed
    first.close()
    assert first.is_closed() and not second.is_closed()  # closing one client closes nothing else

    async def build():
        return await openai_batch.async_client()

    async_sdk = asyncio.run(build())
    assert _tls(async_sdk) is openai_batch.tls_context()
    explicit = openai_batch.client_for_url("http://127.0.0.1:9/v1", "sk-other")
    assert _tls(explicit) is openai_batch.tls_context() and explicit.api_key == "sk-other"


def test_the_s3_client_is_built_once_while_its_connection_is_unchanged(connections):
    shared = storage.client()
    assert storage.client() is shared
    own = storage.client("northfield")  # the institution's own login is a client of its own
    assert own is not shared and own._request_signer._credentials.secret_key == "northfield-own"
    assert storage.client("northfield") is own

    connections.setenv("AIRFLOW_CONN_GRADEFLOW_S3", _s3_connection("rotated"))
    rotated = storage.client()
    assert rotated is not shared and rotated._request_signer._credentials.secret_key == "rotated"
    connections.setenv("AIRFLOW_CONN_GRADEFLOW_S3", _s3_connection("rotated", "http://127.0.0.1:10"))
    moved = storage.client()
    assert moved is not rotated and moved.meta.endpoint_url == "http://127.0.0.1:10"
    # One client per process and connection id: the one built from the old values is let go, not kept beside it.
    assert [values[3] for key, (values, _) in storage._CLIENTS.items() if key[1] == "gradeflow_s3"] == ["rotated"]
