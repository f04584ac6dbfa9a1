"""Waiting on a batch without holding a worker: a deferrable operator and its async trigger.

The provider's OpenAIBatchTrigger polls with the synchronous SDK inside the triggerer's event
loop, which stalls every other trigger while it waits on the network. This trigger gets an
AsyncOpenAI client from the same hook (`OpenAIHook.aget_conn`), so it never blocks the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gradeflow.batch import TERMINAL_STATUSES as TERMINAL
from gradeflow.config import OPENAI_CONN_ID


class BatchStatusTrigger(BaseTrigger):
    """Polls one batch with AsyncOpenAI until it is terminal or `timeout` seconds have passed."""

    def __init__(self, batch_id: str, conn_id: str = OPENAI_CONN_ID, poll_interval: float = 60.0,
                 timeout: float = 36_000.0) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("gradeflow.waiting.BatchStatusTrigger", {
            "batch_id": self.batch_id, "conn_id": self.conn_id,
            "poll_interval": self.poll_interval, "timeout": self.timeout})

    async def _client(self):
        """The same client the hook builds for submitting (base_url, organization, auth type), async."""
        from airflow.providers.openai.hooks.openai import OpenAIHook

        return await OpenAIHook(conn_id=self.conn_id).aget_conn()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await self._client()
        started = time.monotonic()
        try:
            while True:
                remote = await client.batches.retrieve(self.batch_id)
                counts = remote.request_counts.model_dump() if remote.request_counts else {}
                if remote.status in TERMINAL:
                    yield TriggerEvent({"batch_id": self.batch_id, "status": remote.status, "counts": counts})
                    return
                waited = time.monotonic() - started
                if waited >= self.timeout:
                    yield TriggerEvent({"batch_id": self.batch_id, "status": "timeout", "counts": counts,
                                        "message": f"still {remote.status} after {waited:.0f}s"})
                    return
                self.log.info("Batch %s is %s: %s", self.batch_id, remote.status, counts)
                await asyncio.sleep(self.poll_interval)
        finally:
            await client.close()


class WaitForBatchOperator(BaseOperator):
    """Defers until the job's batch is terminal; returns the final status (a small manifest)."""

    template_fields = ("job",)

    def __init__(self, *, job: dict, conn_id: str = OPENAI_CONN_ID, poll_interval: float = 60.0,
                 wait_timeout: float = 36_000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Any) -> dict:
        self.defer(
            trigger=BatchStatusTrigger(self.job["batch_id"], self.conn_id, self.poll_interval, self.wait_timeout),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict) -> dict:
        """Resume after the trigger fired: a timeout fails the task (collect still runs on ALL_DONE)."""
        self.log.info("Batch %s of job %s ended %s: %s", event["batch_id"], self.job["job_id"], event["status"],
                      event.get("counts"))
        if event["status"] == "timeout":
            from airflow.sdk.exceptions import AirflowException

            raise AirflowException(f"Batch {event['batch_id']} {event.get('message')}; it keeps running and a "
                                   "later collect_results run will pick up its results")
        return {"job_id": self.job["job_id"], **event}
