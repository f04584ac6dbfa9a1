"""`Night`: one institution's grading evening as one value, built once per task and handed to every step.

Prepare (gradeflow.grading.prepare) and the grade night (gradeflow.grading.night) used to thread the same
five to nine arguments (connection, S3 client, provider, institution, day, settings, deadline, ...) through
every function; they take a `Night` instead. It holds only what the task was given: it opens nothing and
closes nothing (the task that built it owns the connection, the S3 client and the provider).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from gradeflow.grading import providers

if TYPE_CHECKING:
    import psycopg

    from gradeflow.core.config import Institution, OpenAISettings
    from gradeflow.grading.providers import BatchProvider


@dataclass(frozen=True)
class Night:
    """One institution's night: whose, which exam day, and what its steps work with.

    `day` is the exam day whose evening it is (prepare's day, the grade night's date). `conn` is bound to the
    institution (row-level security), `s3` is its S3 client. `provider` is the batch provider the grade night
    talks to (a plain OpenAI SDK client, as tests and benches hold, is wrapped as openai_batch); prepare needs
    none. `settings` are the OpenAI organisation's settings (None: read include/institutions.yaml when needed).
    `deadline` (Unix time) is when the night's model work stops (None: no deadline); `recheck_seconds` is how
    long the night waits before looking again for room under the enqueued-token cap.
    """

    inst: Institution
    day: date
    conn: psycopg.Connection
    s3: Any
    provider: BatchProvider | None = None
    settings: OpenAISettings | None = None
    deadline: float | None = None
    recheck_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.provider is not None and not isinstance(self.provider, providers.BatchProvider):
            object.__setattr__(self, "provider", providers.as_provider(self.provider, self.inst, self.settings))
