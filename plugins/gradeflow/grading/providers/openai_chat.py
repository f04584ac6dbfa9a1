"""An OpenAI-compatible chat-completions endpoint run as a *local batch* (vLLM, llama.cpp, Ollama, a regional
endpoint): the same JSONL in, the same output/error JSONL out, so collect and the ledger do not change.

Where the work runs: inside the grade night's short steps (gradeflow.grading.night.advance), never in
the trigger and never in a step that waits. Each `work(batch_id)` call sends at most `chunk_lines`
not-yet-finished lines (and starts none after `step_seconds`), `concurrency` at a time, no faster than
`requests_per_minute`, retrying 429 and 5xx with exponential backoff (honouring Retry-After); then the
night defers for a moment (no worker held) and the next step sends the next chunk.

Progress lives in the project's bucket, one small object per finished line
(`batches/<prefix>/openai_chat/<batch_id>/lines/<n>.json`, written as soon as its response arrives),
next to the batch's state (`batch.json`). A worker killed mid-step loses only the requests in flight at
that moment (at most `concurrency`); every line whose response was stored is never sent again, so no
finished line is sent or paid twice. When every line is stored, the output and error files are
assembled in the Batch API's shape (`{"id", "custom_id", "response": {"status_code", "request_id",
"body"}, "error"}`) and the batch is `completed`; a cancelled batch delivers its finished lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from gradeflow.core import storage
from gradeflow.core.config import bucket as default_bucket
from gradeflow.grading.providers.base import BatchProvider, ProviderError, register

if TYPE_CHECKING:
    from openai import OpenAI

    from gradeflow.core.config import Institution, OpenAISettings

log = logging.getLogger(__name__)

ROOT = "batches"  # under the institution's own batches/<prefix>/ (its S3 login reaches only its prefixes)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
# The options an institution may set under `chat:` (gradeflow.core.config.CHAT_OPTIONS) and their defaults.
DEFAULTS = {"concurrency": 4, "requests_per_minute": 600, "chunk_lines": 200, "step_seconds": 120.0,
            "max_retries": 6, "retry_base_seconds": 1.0, "retry_max_seconds": 60.0, "timeout_seconds": 120.0,
            "step_pause_seconds": 2.0}


class RateLimiter:
    """At most `per_minute` request starts a minute, spaced evenly, shared by the worker threads."""

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute if per_minute and per_minute > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@register("openai_chat")
class OpenAIChatProvider(BatchProvider):
    """Chat completions, one request per line, as a batch the night moves on step by step."""

    runs_locally = True

    def __init__(self, inst: Institution | None = None, settings: OpenAISettings | None = None, *,
                 conn_id: str | None = None, sdk_client: OpenAI | None = None, s3: Any = None,
                 bucket: str | None = None, **options: Any) -> None:
        super().__init__(inst, settings)
        self.conn_id = conn_id or (inst.conn_id if inst is not None else None)
        if not self.conn_id and sdk_client is None:
            raise ProviderError(f"institution {getattr(inst, 'id', '?')}: provider openai_chat needs conn_id "
                                "(an Airflow connection whose host is the endpoint's base_url)")
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise ProviderError(f"openai_chat: unknown option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        configured = dict(inst.chat or {}) if inst is not None else {}
        self.options = {**DEFAULTS, **configured, **options}
        self.step_pause_seconds = float(self.options["step_pause_seconds"])
        self._client = sdk_client
        self._s3 = s3
        self.bucket = bucket or default_bucket()
        self.prefix = f"{ROOT}/{inst.s3_prefix if inst is not None else 'default'}/openai_chat"
        self.institution_id = inst.id if inst is not None else None

    # ------------------------------------------------------------------------------------ plumbing
    @property
    def client(self) -> OpenAI:
        if self._client is None:
            from gradeflow.grading.providers.openai_batch import client

            self._client = client(self.conn_id)
        # Retries are ours (counted, rate limited, Retry-After honoured), not the SDK's.
        return self._client.with_options(max_retries=0, timeout=float(self.options["timeout_seconds"]))

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = storage.client(self.institution_id)  # the institution's own S3 login when it has one
        return self._s3

    def _get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def _put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")

    def _keys(self, prefix: str) -> Iterator[str]:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    def _state_key(self, batch_id: str) -> str:
        if not batch_id.startswith("chatbatch_") or "/" in batch_id:
            raise ProviderError(f"not a local chat batch id: {batch_id!r}")
        return f"{self.prefix}/{batch_id}/batch.json"

    def _load(self, batch_id: str) -> dict:
        return json.loads(self._get(self._state_key(batch_id)))

    def _save(self, state: dict) -> None:
        self._put(self._state_key(state["id"]), json.dumps(state).encode())

    # ---------------------------------------------------------------------------------------- files
    def upload(self, name: str, data: bytes, source_key: str | None = None) -> str:
        if source_key:
            return source_key  # the job's input file already is in the bucket: no second copy
        key = f"{self.prefix}/files/{uuid.uuid4().hex}-{name}"
        self._put(key, data)
        return key

    def iter_lines(self, file_id: str | None) -> Iterator[dict]:
        for raw in self.iter_raw_lines(file_id):
            yield json.loads(raw)

    def iter_raw_lines(self, file_id: str | None) -> Iterator[bytes]:
        if not file_id:
            return
        body = self.s3.get_object(Bucket=self.bucket, Key=file_id)["Body"]
        for raw in body.iter_lines():
            if raw.strip():
                yield raw

    # -------------------------------------------------------------------------------------- batches
    def create(self, file_id: str, metadata: dict[str, str]) -> Any:
        lines = self._input(file_id)
        state = {"id": f"chatbatch_{uuid.uuid4().hex}", "object": "batch", "endpoint": "/v1/chat/completions",
                 "input_file_id": file_id, "completion_window": "24h", "status": "in_progress",
                 "created_at": int(time.time()), "in_progress_at": int(time.time()), "metadata": metadata,
                 "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                 "output_file_id": None, "error_file_id": None, "errors": None}
        self._save(state)
        log.info("Local chat batch %s created over %s: %d line(s), to be sent %d at a time, <= %s/min",
                 state["id"], file_id, len(lines), self.options["concurrency"], self.options["requests_per_minute"])
        return _batch(state)

    def retrieve(self, batch_id: str) -> Any:
        return _batch(self._load(batch_id))

    def cancel(self, batch_id: str) -> Any:
        state = self._load(batch_id)
        if state["status"] in ("in_progress", "validating"):
            state.update(status="cancelling", cancelling_at=int(time.time()))
            self._save(state)
        return _batch(state)

    def list_batches(self) -> Iterator[Any]:
        states = [json.loads(self._get(k)) for k in self._keys(f"{self.prefix}/") if k.endswith("/batch.json")]
        return iter(_batch(s) for s in sorted(states, key=lambda s: s["created_at"], reverse=True))

    # ------------------------------------------------------------------------------------- the work
    def _input(self, file_id: str) -> list[dict]:
        return [json.loads(raw) for raw in self._get(file_id).splitlines() if raw.strip()]

    def _done(self, batch_id: str) -> set[int]:
        return {int(k.rsplit("/", 1)[-1].split(".")[0]) for k in self._keys(f"{self.prefix}/{batch_id}/lines/")}

    def _line_key(self, batch_id: str, index: int) -> str:
        return f"{self.prefix}/{batch_id}/lines/{index:08d}.json"

    def work(self, batch_id: str, budget_seconds: float | None = None) -> Any:
        """Send the next bounded chunk of unfinished lines; finish the batch when every line is stored."""
        state = self._load(batch_id)
        if state["status"] in ("completed", "failed", "expired", "cancelled"):
            return _batch(state)
        lines = self._input(state["input_file_id"])
        done = self._done(batch_id)
        todo = [i for i in range(len(lines)) if i not in done]
        if state["status"] == "in_progress" and todo:
            sent = self._send(batch_id, lines, todo[: int(self.options["chunk_lines"])],
                              budget_seconds if budget_seconds is not None else float(self.options["step_seconds"]))
            done |= sent
            todo = [i for i in todo if i not in sent]
        if state["status"] == "cancelling" or not todo:
            return _batch(self._finish(state, lines, done))
        counts = self._counts(batch_id, done) if done else {"completed": 0, "failed": 0}
        state["request_counts"] = {"total": len(lines), **counts}
        self._save(state)
        return _batch(state)

    def _counts(self, batch_id: str, done: set[int]) -> dict[str, int]:
        return {"completed": len(done), "failed": 0}  # progress only (as the Batch API's); exact at the end

    def _send(self, batch_id: str, lines: list[dict], chunk: list[int], budget: float) -> set[int]:
        limiter = RateLimiter(float(self.options["requests_per_minute"]))
        stop_at = time.monotonic() + budget
        client = self.client
        sent: set[int] = set()

        def one(index: int) -> None:
            if time.monotonic() >= stop_at:
                return
            record = self._request(client, limiter, lines[index])
            self._put(self._line_key(batch_id, index), json.dumps(record).encode())
            sent.add(index)

        with ThreadPoolExecutor(max_workers=int(self.options["concurrency"]), thread_name_prefix="chat") as pool:
            for future in [pool.submit(one, i) for i in chunk]:
                future.result()
        log.info("Local chat batch %s: %d line(s) sent and stored this step", batch_id, len(sent))
        return sent

    def _request(self, client: OpenAI, limiter: RateLimiter, line: dict) -> dict:
        """One line: POST its body, retrying 429/5xx and connection errors; the Batch API's line shape back."""
        import openai

        cid = line["custom_id"]
        line_id = f"batch_req_{uuid.uuid4().hex}"
        attempts = int(self.options["max_retries"]) + 1
        for attempt in range(attempts):
            limiter.wait()
            try:
                raw = client.chat.completions.with_raw_response.create(**line["body"])
                body = json.loads(raw.text)
                return {"id": line_id, "custom_id": cid, "error": None,
                        "response": {"status_code": raw.status_code, "request_id": raw.headers.get("x-request-id"),
                                     "body": body}}
            except openai.APIStatusError as exc:
                status, response = exc.status_code, exc.response
                if status in RETRY_STATUSES and attempt + 1 < attempts:
                    self._backoff(attempt, response.headers.get("retry-after"))
                    continue
                return {"id": line_id, "custom_id": cid, "error": None,
                        "response": {"status_code": status, "request_id": response.headers.get("x-request-id"),
                                     "body": _error_body(exc)}}
            except (openai.APIConnectionError, json.JSONDecodeError) as exc:
                if attempt + 1 < attempts:
                    self._backoff(attempt, None)
                    continue
                message = f"{type(exc).__name__}: {exc}"[:500]
                return {"id": line_id, "custom_id": cid, "error": None,
                        "response": {"status_code": 502, "request_id": None,
                                     "body": {"error": {"message": message, "type": "server_error",
                                                        "code": "server_error"}}}}
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: str | None) -> None:
        wait = float(self.options["retry_base_seconds"]) * 2 ** attempt
        with contextlib.suppress(ValueError):
            wait = max(wait, float(retry_after)) if retry_after else wait
        time.sleep(min(wait, float(self.options["retry_max_seconds"])) * (0.5 + random.random() / 2))  # noqa: S311

    def _finish(self, state: dict, lines: list[dict], done: set[int]) -> dict:
        """Assemble the output and error files from the stored lines (idempotent: redone after a crash)."""
        batch_id = state["id"]
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="chat-finish") as pool:
            records = list(pool.map(lambda i: json.loads(self._get(self._line_key(batch_id, i))), sorted(done)))
        ok = [r for r in records if (r.get("response") or {}).get("status_code") == 200]
        failed = [r for r in records if (r.get("response") or {}).get("status_code") != 200]
        output = error = None
        if ok:
            output = f"{self.prefix}/{batch_id}/output.jsonl"
            self._put(output, "".join(json.dumps(r) + "\n" for r in ok).encode())
        if failed:
            error = f"{self.prefix}/{batch_id}/error.jsonl"
            self._put(error, "".join(json.dumps(r) + "\n" for r in failed).encode())
        now = int(time.time())
        final = "cancelled" if state["status"] == "cancelling" else "completed"
        state.update(status=final, output_file_id=output, error_file_id=error,
                     request_counts={"total": len(lines), "completed": len(ok), "failed": len(failed)},
                     **{f"{final}_at": now, "finalizing_at": now})
        self._save(state)
        log.info("Local chat batch %s %s: %d ok, %d failed, %d not run", batch_id, final, len(ok), len(failed),
                 len(lines) - len(done))
        return state


def _error_body(exc: Any) -> dict:
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else None
    if body and "error" in body:
        return body
    if body:
        return {"error": body}
    return {"error": {"message": str(exc)[:500], "type": "api_error", "code": f"http_{exc.status_code}"}}


def _batch(state: dict) -> Any:
    """The state as the SDK's Batch object: the same type the Batch API provider returns."""
    from openai.types import Batch

    return Batch.model_validate(state)
