"""Typed configuration: the tenants, connection ids, bucket and project paths.

Read from files beside the code and from environment variables only, so importing this module
is cheap and safe at DAG parse time.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[3]
INCLUDE_DIR = PROJECT_ROOT / "include"
SQL_DIR = INCLUDE_DIR / "sql"
PROMPTS_DIR = INCLUDE_DIR / "prompts"
INSTITUTIONS_FILE = INCLUDE_DIR / "institutions.yaml"


def institutions_file() -> Path:
    """The tenants' file: GRADEFLOW_INSTITUTIONS when set (read at each call, so a process that set it after
    importing this module, such as the demo, is obeyed), else INSTITUTIONS_FILE."""
    return Path(os.environ.get("GRADEFLOW_INSTITUTIONS") or INSTITUTIONS_FILE)

# Only connection ids live in code; their values come from AIRFLOW_CONN_* or a secrets backend.
POSTGRES_CONN_ID = "gradeflow_db"  # base id: each institution's tasks use gradeflow_db_<id> (db.tenant_conn_id)
POSTGRES_OWNER_CONN_ID = "gradeflow_db_owner"  # migrations and cross-institution admin views only
AWS_CONN_ID = "gradeflow_s3"
OPENAI_CONN_ID = "gradeflow_openai"
SMTP_CONN_ID = "gradeflow_smtp"  # alerts (apache-airflow-providers-smtp); host, port, from_email in its extra
# The pool keeps its historical name (deployed setups create it by name); it bounds every provider's calls.
BATCH_API_POOL = "openai_batch_api"

# Batch providers an institution may choose (`provider:`); gradeflow.grading.providers registers them by
# the same names (tests/unit/test_providers_seam.py checks both lists agree).
PROVIDER_NAMES = ("openai_batch", "openai_chat")
DEFAULT_PROVIDER = "openai_batch"
# Options of the openai_chat provider (`chat:` per institution), each a positive number.
CHAT_OPTIONS = frozenset({"concurrency", "requests_per_minute", "chunk_lines", "step_seconds", "max_retries",
                          "retry_base_seconds", "retry_max_seconds", "timeout_seconds", "step_pause_seconds"})
_CHAT_INTEGERS = frozenset({"concurrency", "chunk_lines", "max_retries"})
_CHAT_ZERO_OK = frozenset({"max_retries", "retry_base_seconds", "step_pause_seconds"})
_CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # a Celery queue (also a Redis key): no spaces or commas

RULE_TYPES = frozenset({"multiple_choice", "true_false", "numeric"})
FREE_TEXT_TYPES = frozenset({"short_answer", "essay"})
QUESTION_TYPES = RULE_TYPES | FREE_TEXT_TYPES

_ID_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
_PREFIX_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class StageSchedule:
    """When a stage's DAG runs, in the institution's local time: at `first`, or every `every_minutes` from
    `first` to `last`."""

    first: str
    last: str | None = None
    every_minutes: int | None = None

    @property
    def times(self) -> tuple[str, ...]:
        return (self.first,) if self.last is None else (self.first, self.last)

    @property
    def cron(self) -> str:
        hour, minute = int(self.first[:2]), int(self.first[3:])
        if self.every_minutes is None:
            return f"{minute} {hour} * * *"
        return f"*/{self.every_minutes} {hour}-{int(self.last[:2])} * * *"


# The institution DAGs' stages in a day's order, and when each runs (local time): the one definition.
SCHEDULES = {
    "ingest": StageSchedule("08:00", "17:45", every_minutes=15),
    "prepare": StageSchedule("18:00"),
    "grade": StageSchedule("20:00"),
    "publish": StageSchedule("06:00"),  # the morning after the exam day
}
STAGES = tuple(SCHEDULES)
CUTOFF_AT = SCHEDULES["prepare"].first  # the exam day's cut-off; an empty exam_day is the last day cut
PUBLISH_AT = SCHEDULES["publish"].first


# When students get their results (`student_release:` per institution); the institution's own release (faculty
# early access) is written by publish as soon as the gate passes, whichever is chosen.
STUDENT_RELEASE_AUTO = "auto"
STUDENT_RELEASE_APPROVAL = "after_faculty_approval"
MAX_SUBMISSION_BYTES_CAP = 16 * 1024 ** 3  # max_submission_bytes may not go beyond (the file is spooled to local disk)
MAX_APPROVAL_HOURS = 22.0  # a decision must come before the next morning's publish run (one publish run at a time)


def last_cut_day(when: datetime, timezone: str) -> date:
    """The last exam day whose cut-off (CUTOFF_AT local) has passed at `when`: that date from 18:00, else the day
    before. The exam day of a run whose `exam_day` is empty, one rule for prepare, grade and publish."""
    local = when.astimezone(ZoneInfo(timezone))
    cut = local.hour * 60 + local.minute >= int(CUTOFF_AT[:2]) * 60 + int(CUTOFF_AT[3:])
    return local.date() - timedelta(days=0 if cut else 1)


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
    # Output tokens expected per request of a question with no usage yet; None: from the question's schema and rubric
    # items (gradeflow.grading.batch.cold_output_tokens). Then learned per question (grading.prepare.output_estimates).
    expected_output_tokens: int | None = None
    max_requests_per_batch: int = 50_000  # the Batch API's per-file limit
    max_batch_bytes: int = 200 * 1024 * 1024  # the Batch API's per-file limit, measured on the bytes written
    max_attempts: int = 3  # sends of one line across the night's waves (a token-cap refusal does not count)
    retry_backoff_seconds: float = 300.0  # wait before wave n+1: backoff * 2**(n-1)
    min_confidence: float = 0.95  # a model grade less sure than this goes to human review (low_confidence)
    alert_emails: tuple[str, ...] = ()  # who is told of failed runs, failed gates, late results, review spikes
    release_deadline: str = "08:00"  # local HH:MM, the morning after the exam day: results must be out by then
    review_alert_share: float = 0.2  # alert when more than this share of a day's answers waits in review
    provider: str = DEFAULT_PROVIDER  # the batch provider: openai_batch (Batch API) | openai_chat (local batch)
    conn_id: str | None = None  # its Airflow connection id (host = base_url); openai_batch defaults to gradeflow_openai
    chat: tuple[tuple[str, float], ...] = ()  # openai_chat options (concurrency, requests_per_minute, ...)
    day_window_days: int = 2  # an answer submitted further than this from its day folder (local dates) is rejected
    max_submission_bytes: int = 1024 ** 3  # a bigger submissions file is a named reject of the whole file, archived
    audit_rate: float = 0.05  # share of each question's unreviewed model grades drawn nightly into blind review
    audit_min_per_question: int = 2  # ... but at least this many per question (all of them when fewer)
    # Calibration (docs/review-round-trip.md, "Choosing min_confidence"): a model grade counts as accurate when it
    # is within tolerance_points of the human score; the threshold table recommends the smallest review share whose
    # accuracy's 95% lower bound reaches target_accuracy (the original notes' "min 95% certainty", made measurable).
    tolerance_points: float = 0.5
    target_accuracy: float = 0.95
    student_release: str = "auto"  # auto | after_faculty_approval | at HH:MM: when students get their results
    faculty_approval_hours: float = 12.0  # after_faculty_approval: no decision by then fails the wait, alerts
    queue: str | None = None  # the Celery queue its tasks go to (docs/scale-out.md); None: Airflow's default queue

    @property
    def student_release_at(self) -> str | None:
        """The local HH:MM of an `at HH:MM` student release (the morning after the exam day), else None."""
        return self.student_release[3:] if self.student_release.startswith("at ") else None

    def student_release_time(self, exam_day: date) -> datetime | None:
        """When an `at HH:MM` institution's students get `exam_day`: HH:MM local the morning after; else None."""
        at = self.student_release_at
        if at is None:
            return None
        return datetime.combine(exam_day + timedelta(days=1), datetime.strptime(at, "%H:%M").time(), self.tz)

    @property
    def needs_faculty_approval(self) -> bool:
        """Students see the day only after a faculty member approves it in the Airflow UI."""
        return self.student_release == STUDENT_RELEASE_APPROVAL

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
    where = f"{institutions_file().name}: institutions[{index}]"
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
    raw.update(_provider_fields(where, raw))
    raw.update(_student_release_fields(where, raw))
    if not _PREFIX_RE.match(str(raw["s3_prefix"])):
        raise ConfigError(f"{where}: field 's3_prefix' must match {_PREFIX_RE.pattern}")
    try:
        ZoneInfo(raw["timezone"])
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: field 'timezone' is not an IANA time zone: {raw['timezone']!r}") from exc
    confidence = raw.get("min_confidence", 0.95)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence <= 1:
        raise ConfigError(f"{where}: field 'min_confidence' must be a number from 0 to 1, got {confidence!r}")
    raw.update(_calibration_fields(where, raw))
    expected_out = raw.get("expected_output_tokens")
    if expected_out is not None and (isinstance(expected_out, bool) or not isinstance(expected_out, int)
                                     or expected_out <= 0):
        raise ConfigError(f"{where}: field 'expected_output_tokens' must be a whole number > 0 (or left out: "
                          f"estimated from each question's schema), got {expected_out!r}")
    window = raw.get("day_window_days", Institution.day_window_days)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ConfigError(f"{where}: field 'day_window_days' must be a whole number of days >= 0, got {window!r}")
    most = raw.get("max_submission_bytes", Institution.max_submission_bytes)
    if isinstance(most, bool) or not isinstance(most, int) or not 0 < most <= MAX_SUBMISSION_BYTES_CAP:
        raise ConfigError(f"{where}: field 'max_submission_bytes' must be a whole number of bytes from 1 to "
                          f"{MAX_SUBMISSION_BYTES_CAP:,} (16 GiB), got {most!r}")
    raw.update(_audit_fields(where, raw))
    queue = raw.get("queue")
    if queue is not None and (not isinstance(queue, str) or not _QUEUE_RE.match(queue)):
        raise ConfigError(f"{where}: field 'queue' must be a Celery queue name (letters, digits, _ . -), got {queue!r}")
    return Institution(**raw)


def _audit_fields(where: str, raw: dict) -> dict:
    """Validate the audit sample's settings (docs/review-round-trip.md, "The audit sample"); return them."""
    rate = raw.get("audit_rate", Institution.audit_rate)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ConfigError(f"{where}: field 'audit_rate' must be a number from 0 to 1 (the share of each question's "
                          f"unreviewed model grades audited; 0 with audit_min_per_question 0 turns audits off), "
                          f"got {rate!r}")
    least = raw.get("audit_min_per_question", Institution.audit_min_per_question)
    if isinstance(least, bool) or not isinstance(least, int) or least < 0:
        raise ConfigError(f"{where}: field 'audit_min_per_question' must be a whole number >= 0, got {least!r}")
    tolerance = raw.get("tolerance_points", Institution.tolerance_points)
    if (isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance)
            or tolerance < 0):
        raise ConfigError(f"{where}: field 'tolerance_points' must be a number of points >= 0, got {tolerance!r}")
    return {"audit_rate": float(rate), "audit_min_per_question": least, "tolerance_points": float(tolerance)}


def _calibration_fields(where: str, raw: dict) -> dict:
    """Validate target_accuracy (in (0, 1); tolerance_points is validated with the audit fields); return it."""
    target = raw.get("target_accuracy", Institution.target_accuracy)
    if isinstance(target, bool) or not isinstance(target, int | float) or not 0 < target < 1:
        raise ConfigError(f"{where}: field 'target_accuracy' must be a share in (0, 1), e.g. 0.95, got {target!r}")
    return {"target_accuracy": float(target)}


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


def _student_release_fields(where: str, raw: dict) -> dict:
    """Validate when students see results (`student_release`) and how long a faculty decision may take."""
    value = raw.get("student_release", STUDENT_RELEASE_AUTO)
    if isinstance(value, str) and value.startswith("at "):
        at = value[3:].strip()
        if not _HHMM_RE.match(at) or at <= PUBLISH_AT:
            raise ConfigError(f"{where}: field 'student_release' 'at HH:MM' needs a local time after the {PUBLISH_AT} "
                              f"publish run (the morning after the exam day), e.g. \"at 12:00\", got {value!r}")
        value = f"at {at}"
    elif value not in (STUDENT_RELEASE_AUTO, STUDENT_RELEASE_APPROVAL):
        raise ConfigError(f"{where}: field 'student_release' must be {STUDENT_RELEASE_AUTO!r}, "
                          f"{STUDENT_RELEASE_APPROVAL!r} or \"at HH:MM\" (quoted, local time), got {value!r}")
    hours = raw.get("faculty_approval_hours", Institution.faculty_approval_hours)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= MAX_APPROVAL_HOURS:
        raise ConfigError(f"{where}: field 'faculty_approval_hours' must be a number of hours in (0, "
                          f"{MAX_APPROVAL_HOURS:g}] (a decision comes before the next morning's publish run), "
                          f"got {hours!r}")
    if "faculty_approval_hours" in raw and value != STUDENT_RELEASE_APPROVAL:
        raise ConfigError(f"{where}: field 'faculty_approval_hours' is only for student_release "
                          f"{STUDENT_RELEASE_APPROVAL!r} (student_release is {value!r})")
    return {"student_release": value, "faculty_approval_hours": float(hours)}


def _provider_fields(where: str, raw: dict) -> dict:
    """Validate the batch provider, its connection id (never a secret: a name) and the chat options."""
    provider = raw.get("provider", DEFAULT_PROVIDER)
    if provider not in PROVIDER_NAMES:
        raise ConfigError(f"{where}: field 'provider' must be one of {list(PROVIDER_NAMES)}, got {provider!r}")
    conn_id = raw.get("conn_id")
    if conn_id is not None and (not isinstance(conn_id, str) or not _CONN_ID_RE.match(conn_id)):
        raise ConfigError(f"{where}: field 'conn_id' must be an Airflow connection id (letters, digits, _ . -), "
                          f"got {conn_id!r}; the endpoint's URL and key live in that connection, never here")
    if provider == "openai_chat" and not conn_id:
        raise ConfigError(f"{where}: provider 'openai_chat' needs field 'conn_id': the Airflow connection whose "
                          "host is the chat endpoint's base_url (e.g. http://vllm.internal:8000/v1)")
    chat = raw.get("chat") or {}
    if not isinstance(chat, dict):
        raise ConfigError(f"{where}: field 'chat' must be a mapping of options {sorted(CHAT_OPTIONS)}")
    if chat and provider != "openai_chat":
        raise ConfigError(f"{where}: field 'chat' is only for provider 'openai_chat' (provider is {provider!r})")
    unknown = sorted(set(chat) - CHAT_OPTIONS)
    if unknown:
        raise ConfigError(f"{where}: field 'chat' has unknown option(s) {unknown}; known: {sorted(CHAT_OPTIONS)}")
    for key, value in chat.items():
        zero_ok = key in _CHAT_ZERO_OK
        if (isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (value == 0 and not zero_ok)
                or (key in _CHAT_INTEGERS and not float(value).is_integer())):
            raise ConfigError(f"{where}: field 'chat.{key}' must be a {'non-negative' if zero_ok else 'positive'} "
                              f"{'whole number' if key in _CHAT_INTEGERS else 'number'}, got {value!r}")
    return {"provider": provider, "conn_id": conn_id,
            "chat": tuple(sorted((k, int(v) if k in _CHAT_INTEGERS else float(v)) for k, v in chat.items()))}


def _stamp(path: Path) -> tuple[int, int]:
    """The file's change stamp: a long-running process (the triggerer's callbacks, a worker) rereads an edited
    file at its next use, without a restart; an unchanged one costs a stat()."""
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def load_institutions(path: Path | None = None) -> tuple[Institution, ...]:
    """All tenants, sorted by id, validated (unique ids and prefixes, real time zones); reread when edited."""
    path = Path(path or institutions_file())
    return _load_institutions(path, _stamp(path))


@lru_cache(maxsize=4)
def _load_institutions(path: Path, stamp: tuple[int, int]) -> tuple[Institution, ...]:
    # libyaml's C loader when present: the file is read at every DAG parse (see devstack/bench_parse.py).
    data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}  # noqa: S506
    items = [_parse_institution(i, raw) for i, raw in enumerate(data.get("institutions") or [])]
    for attr in ("id", "s3_prefix"):
        values = [getattr(inst, attr) for inst in items]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ConfigError(f"{path.name}: duplicate {attr}: {dupes}")
    return tuple(sorted(items, key=lambda inst: inst.id))


def load_openai_settings(path: Path | None = None) -> OpenAISettings:
    """The shared API organisation's limits, validated (cap > 0, 0 < share <= 1); reread when edited."""
    path = Path(path or institutions_file())
    return _load_openai_settings(path, _stamp(path))


@lru_cache(maxsize=4)
def _load_openai_settings(path: Path, stamp: tuple[int, int]) -> OpenAISettings:
    raw = (yaml.safe_load(path.read_text()) or {}).get("openai") or {}
    unknown = set(raw) - set(OpenAISettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"{path.name}: openai: unknown field(s) {sorted(unknown)}")
    settings = OpenAISettings(**raw)
    if settings.enqueued_token_cap <= 0 or not 0 < settings.max_share_per_institution <= 1:
        raise ConfigError(f"{path.name}: openai: enqueued_token_cap must be > 0 and "
                          "max_share_per_institution in (0, 1]")
    return settings


def load_platform_alert_emails(path: Path | None = None) -> tuple[str, ...]:
    """The operators' recipients (top-level `platform_alert_emails`): failures that are the platform's."""
    path = Path(path or institutions_file())
    return _load_platform_alert_emails(path, _stamp(path))


@lru_cache(maxsize=4)
def _load_platform_alert_emails(path: Path, stamp: tuple[int, int]) -> tuple[str, ...]:
    emails = (yaml.safe_load(path.read_text()) or {}).get("platform_alert_emails") or []
    if isinstance(emails, str) or not isinstance(emails, list):
        raise ConfigError(f"{path.name}: platform_alert_emails must be a list of e-mail addresses, got {emails!r}")
    bad = [e for e in emails if not isinstance(e, str) or not _EMAIL_RE.match(e)]
    if bad:
        raise ConfigError(f"{path.name}: platform_alert_emails has invalid address(es) {bad}")
    return tuple(emails)


def get_institution(institution_id: str) -> Institution:
    """The tenant with this id, or a ConfigError naming the known ids."""
    for inst in load_institutions():
        if inst.id == institution_id:
            return inst
    known = [inst.id for inst in load_institutions()]
    raise ConfigError(f"unknown institution {institution_id!r}; known: {known}")
