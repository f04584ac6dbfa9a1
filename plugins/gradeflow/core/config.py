"""Typed configuration: the tenants, connection ids, bucket and project paths.

Read from files beside the code and from environment variables only, so importing this module
is cheap and safe at DAG parse time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = PROJECT_ROOT / "include"
SQL_DIR = INCLUDE_DIR / "sql"
PROMPTS_DIR = INCLUDE_DIR / "prompts"
INSTITUTIONS_FILE = Path(os.environ.get("GRADEFLOW_INSTITUTIONS", INCLUDE_DIR / "institutions.yaml"))

# Only connection ids live in code; their values come from AIRFLOW_CONN_* or a secrets backend.
POSTGRES_CONN_ID = "gradeflow_db"  # the night: least-privilege worker role, bound to one institution
POSTGRES_OWNER_CONN_ID = "gradeflow_db_owner"  # migrations and cross-institution admin views only
AWS_CONN_ID = "gradeflow_s3"
OPENAI_CONN_ID = "gradeflow_openai"
SMTP_CONN_ID = "gradeflow_smtp"  # alerts (apache-airflow-providers-smtp); host, port, from_email in its extra
BATCH_API_POOL = "openai_batch_api"

RULE_TYPES = frozenset({"multiple_choice", "true_false", "numeric"})
FREE_TEXT_TYPES = frozenset({"short_answer", "essay"})
QUESTION_TYPES = RULE_TYPES | FREE_TEXT_TYPES

_ID_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
PUBLISH_AT = "06:00"  # the publish DAG's local time, the morning after the exam day


def bucket() -> str:
    """The S3 bucket that holds incoming, archive, batch, rejects and release objects."""
    return os.environ.get("GRADEFLOW_BUCKET", "gradeflow")


@dataclass(frozen=True)
class Institution:
    """One tenant: its DAGs, schedules, S3 prefix, model and nightly token budget."""

    id: str
    name: str
    timezone: str
    s3_prefix: str
    model: str = "gpt-4.1-mini"
    daily_token_budget: int = 2_000_000  # input + expected output tokens one night may spend (actual spend counts)
    price_input_per_mtok: float = 0.20
    price_output_per_mtok: float = 0.80
    expected_output_tokens: int = 120  # per request, until the institution's own recent usage says otherwise
    max_requests_per_batch: int = 50_000  # the Batch API's per-file limit
    max_batch_bytes: int = 200 * 1024 * 1024  # the Batch API's per-file limit, measured on the bytes written
    max_attempts: int = 3  # sends of one line across the night's waves (a token-cap refusal does not count)
    retry_backoff_seconds: float = 300.0  # wait before wave n+1: backoff * 2**(n-1)
    min_confidence: float = 0.95  # a model grade less sure than this goes to human review (low_confidence)
    alert_emails: tuple[str, ...] = ()  # who is told of failed runs, failed gates, late results, review spikes
    release_deadline: str = "08:00"  # local HH:MM, the morning after the exam day: results must be out by then
    review_alert_share: float = 0.2  # alert when more than this share of a day's answers waits in review
    day_window_days: int = 2  # an answer submitted further than this from its day folder (local dates) is rejected

    @property
    def tz(self) -> ZoneInfo:
        """The institution's time zone; every schedule and exam day is in it."""
        return ZoneInfo(self.timezone)

    def key(self, area: str, exam_day: date | str, *parts: str) -> str:
        """An S3 key under this institution's prefix, e.g. key("archive", day, sha, name)."""
        return "/".join([area, self.s3_prefix, str(exam_day), *parts])

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Batch price of the given tokens for this institution's model."""
        return round(
            input_tokens * self.price_input_per_mtok / 1e6 + output_tokens * self.price_output_per_mtok / 1e6, 6
        )


@dataclass(frozen=True)
class OpenAISettings:
    """The API organisation all institutions share (top-level `openai:` in institutions.yaml).

    `enqueued_token_cap` is the organisation's enqueued-input-token limit for the model; no
    institution may hold more than `max_share_per_institution` of it at once.
    """

    enqueued_token_cap: int = 2_000_000
    max_share_per_institution: float = 0.3

    def institution_cap(self) -> int:
        """The most enqueued tokens one institution may hold at once."""
        return int(self.enqueued_token_cap * self.max_share_per_institution)


class ConfigError(ValueError):
    """The institutions file is wrong; the message names the entry and the field."""


def _parse_institution(index: int, raw: dict) -> Institution:
    where = f"{INSTITUTIONS_FILE.name}: institutions[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = set(Institution.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    for field in ("id", "name", "timezone"):
        if not raw.get(field):
            raise ConfigError(f"{where}: field '{field}' is required")
    if not _ID_RE.match(str(raw["id"])):
        raise ConfigError(f"{where}: field 'id' must match {_ID_RE.pattern}, got {raw['id']!r}")
    raw = {"s3_prefix": raw["id"], **raw}
    raw.update(_alert_fields(where, raw))
    if not _PREFIX_RE.match(str(raw["s3_prefix"])):
        raise ConfigError(f"{where}: field 's3_prefix' must match {_PREFIX_RE.pattern}")
    try:
        ZoneInfo(raw["timezone"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: field 'timezone' is not an IANA time zone: {raw['timezone']!r}") from exc
    confidence = raw.get("min_confidence", 0.95)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise ConfigError(f"{where}: field 'min_confidence' must be a number from 0 to 1, got {confidence!r}")
    window = raw.get("day_window_days", Institution.day_window_days)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ConfigError(f"{where}: field 'day_window_days' must be a whole number of days >= 0, got {window!r}")
    return Institution(**raw)


def _alert_fields(where: str, raw: dict) -> dict:
    """Validate the alerting fields (recipients, release deadline, review share); return them normalised."""
    emails = raw.get("alert_emails") or []
    if isinstance(emails, str) or not isinstance(emails, list):
        raise ConfigError(f"{where}: field 'alert_emails' must be a list of e-mail addresses, got {emails!r}")
    bad = [e for e in emails if not isinstance(e, str) or not _EMAIL_RE.match(e)]
    if bad:
        raise ConfigError(f"{where}: field 'alert_emails' has invalid address(es) {bad}")
    deadline = str(raw.get("release_deadline", Institution.release_deadline))
    if not _HHMM_RE.match(deadline) or deadline <= PUBLISH_AT:
        raise ConfigError(f"{where}: field 'release_deadline' must be a local time HH:MM after the "
                          f"{PUBLISH_AT} publish run, got {deadline!r}")
    share = raw.get("review_alert_share", Institution.review_alert_share)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ConfigError(f"{where}: field 'review_alert_share' must be a number in (0, 1], got {share!r}")
    return {"alert_emails": tuple(emails), "release_deadline": deadline, "review_alert_share": float(share)}


@lru_cache(maxsize=4)
def load_institutions(path: Path | None = None) -> tuple[Institution, ...]:
    """All tenants, sorted by id, validated (unique ids and prefixes, real time zones)."""
    path = Path(path or INSTITUTIONS_FILE)
    # libyaml's C loader when present: the file is read at every DAG parse (see devstack/bench_parse.py).
    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}  # noqa: S506
    items = [_parse_institution(i, raw) for i, raw in enumerate(data.get("institutions") or [])]
    for attr in ("id", "s3_prefix"):
        values = [getattr(inst, attr) for inst in items]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"{path.name}: duplicate {attr}: {dupes}")
    return tuple(sorted(items, key=lambda inst: inst.id))


@lru_cache(maxsize=4)
def load_openai_settings(path: Path | None = None) -> OpenAISettings:
    """The shared API organisation's limits, validated (cap > 0, 0 < share <= 1)."""
    path = Path(path or INSTITUTIONS_FILE)
    raw = (yaml.safe_load(path.read_text()) or {}).get("openai") or {}
    unknown = set(raw) - set(OpenAISettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{path.name}: openai: unknown field(s) {sorted(unknown)}")
    settings = OpenAISettings(**raw)
    if settings.enqueued_token_cap <= 0 or not 0 < settings.max_share_per_institution <= 1:
        raise ConfigError(f"{path.name}: openai: enqueued_token_cap must be > 0 and "
                          "max_share_per_institution in (0, 1]")
    return settings


def get_institution(institution_id: str) -> Institution:
    """The tenant with this id, or a ConfigError naming the known ids."""
    for inst in load_institutions():
        if inst.id == institution_id:
            return inst
    known = [inst.id for inst in load_institutions()]
    raise ConfigError(f"unknown institution {institution_id!r}; known: {known}")
