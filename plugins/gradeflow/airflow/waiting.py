"""The night's grading as one deferrable operator: a bounded loop of short steps, waiting deferred between them.

Airflow DAGs are static, while the night's shape is not (how many shards fit under the shared
enqueued-token cap, how many retry waves, how long the backoff). So the grade DAG has one task,
`grade_night`, whose operator runs `gradeflow.grading.night.advance` (reconcile and collect, write a due
retry wave, submit what fits under the cap) and then defers on `WaveTrigger` until the first of its
live batches finishes, the next wave's backoff has passed, or it is time to look for room under the
cap again. No worker slot is held while waiting. The loop is bounded: each line has at most
`max_attempts` sends that count, and the night stops at its deadline (05:45 local, before the 06:00
release), leaving unfinished work pending for the release and for the next run to collect.

The trigger uses the async client of the same hook (gradeflow.grading.providers.openai_batch.async_client),
so it never blocks the triggerer's event loop (the Airflow provider's OpenAIBatchTrigger polls with the
synchronous SDK). It polls only a remote provider's batches: a local batch (openai_chat) is moved on by
the steps themselves, so between two of them the trigger only waits for the wake time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent

from gradeflow.core.config import OPENAI_CONN_ID

DEADLINE_LOCAL = dtime(5, 45)  # the night's model work stops here: the 06:00 release goes out regardless
CATCH_UP_HOURS = 10  # a run started after its night's deadline (a manual catch-up) gets this long


class WaveTrigger(BaseTrigger):
    """Fires when one of `batch_ids` is finished, or at `wake_at` (Unix time), whichever comes first."""

    def __init__(self, batch_ids: list[str], wake_at: float | None, deadline: float,
                 conn_id: str = OPENAI_CONN_ID, poll_interval: float = 60.0) -> None:
        super().__init__()
        self.batch_ids = list(batch_ids)
        self.wake_at = wake_at
        self.deadline = deadline
        self.conn_id = conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("gradeflow.airflow.waiting.WaveTrigger", {
            "batch_ids": self.batch_ids, "wake_at": self.wake_at, "deadline": self.deadline,
            "conn_id": self.conn_id, "poll_interval": self.poll_interval})

    async def _client(self):
        """The same client the hook builds for submitting (base_url, organization, auth type), async."""
        from gradeflow.grading.providers.openai_batch import async_client

        return await async_client(self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from gradeflow.grading.batch import TERMINAL_STATUSES as TERMINAL  # the triggerer's, not the DAG file's

        client = await self._client() if self.batch_ids else None
        wake_at = min(t for t in (self.wake_at, self.deadline) if t is not None)
        try:
            while True:
                for batch_id in self.batch_ids:
                    remote = await client.batches.retrieve(batch_id)
                    if remote.status in TERMINAL:
                        yield TriggerEvent({"reason": "batch_finished", "batch_id": batch_id,
                                            "status": remote.status, "deadline": self.deadline})
                        return
                now = time.time()
                if now >= wake_at:
                    yield TriggerEvent({"reason": "wake", "deadline": self.deadline})
                    return
                await asyncio.sleep(max(0.0, min(self.poll_interval, wake_at - now)))
        finally:
            if client is not None:
                await client.close()


class GradeNightOperator(BaseOperator):
    """Grades one institution's night in waves (gradeflow.grading.night.advance), deferring between steps.

    Returns the night's counts (waves, batches, estimated vs actual tokens, cost) as a small manifest.
    """

    def __init__(self, *, institution_id: str, conn_id: str = OPENAI_CONN_ID, poll_interval: float = 60.0,
                 recheck_seconds: float = 300.0, retry_backoff_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_backoff_seconds = retry_backoff_seconds  # overrides the institution's (the demo's short night)
        self.institution_id = institution_id
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.recheck_seconds = recheck_seconds

    def execute(self, context: Any) -> dict | None:
        return self._step(context, None)

    def execute_complete(self, context: Any, event: dict) -> dict | None:
        """Resumed by the trigger: say why, then take the next step."""
        if event.get("reason") == "batch_finished":
            self.log.info("Batch %s is %s: collecting it and submitting what now fits", event["batch_id"],
                          event["status"])
        else:
            self.log.info("Woke up: time for the next wave or for another look under the enqueued-token cap")
        return self._step(context, event.get("deadline"))

    def _deadline(self, context: Any, inst, night) -> float:
        deadline = datetime.combine(night + timedelta(days=1), DEADLINE_LOCAL, inst.tz).timestamp()
        if deadline <= time.time():  # a manual run for an old day: give it a night of its own
            deadline = time.time() + CATCH_UP_HOURS * 3600
        return deadline

    def _step(self, context: Any, deadline: float | None) -> dict | None:
        from gradeflow.airflow import tasks
        from gradeflow.core.config import get_institution
        from gradeflow.grading import night as grading

        inst = get_institution(self.institution_id)
        if self.retry_backoff_seconds is not None:
            inst = replace(inst, retry_backoff_seconds=self.retry_backoff_seconds)
        night = tasks.exam_day_for(context, inst)
        deadline = deadline or self._deadline(context, inst, night)
        provider = grading.provider_for(inst, self.conn_id)
        try:
            with tasks.open_night(inst, night, provider=provider, deadline=deadline,
                                  recheck_seconds=self.recheck_seconds) as tonight:
                step = grading.advance(tonight)
        finally:
            provider.close()
        self.log.info("%s", step.message)
        if step.done:
            return step.counts
        self.defer(trigger=WaveTrigger(step.wait_batch_ids, step.wake_at, deadline,
                                       getattr(provider, "conn_id", None) or self.conn_id, self.poll_interval),
                   method_name="execute_complete")
        return None
