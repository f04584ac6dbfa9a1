"""The OpenAI Batch API through the official SDK: files.create, batches.create/retrieve/cancel/list,
files.content streamed. The client comes from the Airflow OpenAI hook (base_url from the connection's
host, so the dev stack's emulator and the real API are the same code path)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from gradeflow.core.config import OPENAI_CONN_ID
from gradeflow.grading import batch
from gradeflow.grading.providers.base import BatchProvider, Limits, register

if TYPE_CHECKING:
    import ssl

    from openai import AsyncOpenAI, OpenAI

    from gradeflow.core.config import Institution, OpenAISettings

COMPLETION_WINDOW = "24h"
BATCH_LIST_PAGE = 100


def client(conn_id: str = OPENAI_CONN_ID) -> OpenAI:
    """The official SDK client, built by the Airflow OpenAI hook (base_url from the connection host)."""
    return _hook_class()(conn_id=conn_id).get_conn()


def client_for_url(base_url: str, api_key: str) -> OpenAI:
    """An SDK client for an explicit base URL (the evaluate CLI's --base-url), outside any Airflow connection."""
    from openai import DefaultHttpxClient, OpenAI

    return OpenAI(base_url=base_url, api_key=api_key, http_client=DefaultHttpxClient(verify=tls_context()))


async def async_client(conn_id: str = OPENAI_CONN_ID) -> AsyncOpenAI:
    """The same client, async (base_url, organization, auth type), for a trigger's event loop."""
    return await _hook_class()(conn_id=conn_id).aget_conn()


@cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings (trusted CAs) of every SDK client this process builds: built once.

    Each new SDK client otherwise builds its own from the CA bundle (~20-30 ms of CPU, most of building a client),
    and a night builds one per provider it uses. The same context as the SDK's default (httpx's, honouring
    SSL_CERT_FILE / SSL_CERT_DIR); each client keeps its own connection pool, so closing one closes nothing else."""
    import httpx2  # the SDK's HTTP library

    return httpx2.create_ssl_context()


@cache
def _hook_class() -> type:
    """Airflow's OpenAI hook, building each client on the shared tls_context() with the SDK's own defaults."""
    from airflow.providers.openai.hooks.openai import OpenAIHook
    from openai import DefaultAsyncHttpxClient, DefaultHttpxClient

    class _Hook(OpenAIHook):
        http_client_class: type = DefaultHttpxClient

        def get_conn(self) -> OpenAI:
            self.http_client_class = DefaultHttpxClient
            return super().get_conn()

        async def aget_conn(self) -> AsyncOpenAI:
            self.http_client_class = DefaultAsyncHttpxClient
            return await super().aget_conn()

        def _client_kwargs(self, conn: Any, extras: dict[str, Any]) -> dict[str, Any]:
            kwargs = super()._client_kwargs(conn, extras)
            kwargs.setdefault("http_client", self.http_client_class(verify=tls_context()))
            return kwargs

    return _Hook


@register("openai_batch")
class OpenAIBatchProvider(BatchProvider):
    """The OpenAI Batch API: a remote batch, 24 h completion window, half price, a shared enqueued-token cap."""

    runs_locally = False

    def __init__(self, inst: Institution | None = None, settings: OpenAISettings | None = None, *,
                 conn_id: str | None = None, sdk_client: OpenAI | None = None) -> None:
        super().__init__(inst, settings)
        self.conn_id = conn_id or (inst.conn_id if inst is not None and inst.conn_id else OPENAI_CONN_ID)
        self._client = sdk_client

    @property
    def client(self) -> OpenAI:
        """The SDK client (built on first use)."""
        if self._client is None:
            self._client = client(self.conn_id)
        return self._client

    def upload(self, name: str, data: bytes, source_key: str | None = None) -> str:
        return self.client.files.create(file=(name, data), purpose="batch").id

    def iter_lines(self, file_id: str | None) -> Iterator[dict]:
        for raw in self.iter_raw_lines(file_id):
            yield json.loads(raw)

    def iter_raw_lines(self, file_id: str | None) -> Iterator[str]:
        if not file_id:
            return
        # Lines end at b"\n" only. The SDK's iter_lines (httpx's) splits text like str.splitlines, also at
        # U+0085, U+2028 and U+2029, which JSON allows unescaped inside a string: a model's reply holding one
        # would have been cut in two and failed to parse. Decoded as httpx decoded them (UTF-8, bad bytes replaced).
        with self.client.files.with_streaming_response.content(file_id) as response:
            pending = b""
            for chunk in response.iter_bytes():
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    if raw.strip():
                        yield raw.decode("utf-8", errors="replace")
            if pending.strip():
                yield pending.decode("utf-8", errors="replace")

    def create(self, file_id: str, metadata: dict[str, str]) -> Any:
        return self.client.batches.create(input_file_id=file_id, endpoint=batch.BATCH_ENDPOINT,
                                          completion_window=COMPLETION_WINDOW, metadata=metadata)

    def retrieve(self, batch_id: str) -> Any:
        return self.client.batches.retrieve(batch_id)

    def cancel(self, batch_id: str) -> Any:
        return self.client.batches.cancel(batch_id)

    def list_batches(self) -> Iterator[Any]:
        return iter(self.client.batches.list(limit=BATCH_LIST_PAGE))  # the SDK pages on as it is iterated

    def limits(self) -> Limits:
        base = super().limits()
        settings = self.settings
        if settings is None:
            from gradeflow.core.config import load_openai_settings

            settings = load_openai_settings()
        return Limits(base.max_lines, base.max_bytes, settings.enqueued_token_cap, settings.institution_cap())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
