"""Shared DAG policy: default_args, approved tags, the failure notifier. A test enforces them."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

log = logging.getLogger("gradeflow.alerts")

OWNER = "gradeflow-data-eng"
STAGES = ("ingest", "prepare", "grade", "publish", "admin")


def notify_failure(context: dict[str, Any]) -> None:
    """One greppable alert line per failed task (wire a Slack/e-mail notifier here in production)."""
    ti = context.get("task_instance")
    log.error("GRADEFLOW ALERT dag=%s task=%s run=%s try=%s: %s", getattr(ti, "dag_id", "?"),
              getattr(ti, "task_id", "?"), getattr(ti, "run_id", "?"), getattr(ti, "try_number", "?"),
              context.get("exception"))


DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(minutes=45),
    "on_failure_callback": notify_failure,
}


def tags(stage: str, institution_id: str | None = None) -> list[str]:
    """Tags from the approved set: gradeflow, stage:<name>, institution:<id>."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return ["gradeflow", f"stage:{stage}"] + ([f"institution:{institution_id}"] if institution_id else [])
