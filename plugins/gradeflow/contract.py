"""The exam file contract (docs/file-contract.md): parse and validate exam and submission files.

Pure functions, no I/O: they take bytes and return good records plus rejects that name the file,
the row and the field, so that one bad row never costs the good rows beside it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePosixPath

from gradeflow.config import FREE_TEXT_TYPES, QUESTION_TYPES, RULE_TYPES

SUBMISSION_COLUMNS = ("submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at")
SUBMISSION_SUFFIXES = (".csv", ".jsonl", ".parquet")
MAX_ANSWER_CHARS = 20_000
MAX_ID_CHARS = 128
_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Reject:
    """Why one row (or, with row None, the whole file) was not loaded."""

    file: str
    row: int | None
    field: str | None
    value: str | None
    reason: str


@dataclass(frozen=True)
class IncomingPath:
    """What an incoming key says: institution prefix, exam day and kind of file."""

    prefix: str
    exam_day: date
    kind: str  # exam | submissions | unknown
    name: str


class FileRejected(ValueError):
    """The file as a whole cannot be read; the message says why."""


def parse_incoming_key(key: str) -> IncomingPath | None:
    """Read `incoming/<prefix>/<YYYY-MM-DD>/<exams|submissions>/<name>`; None when it does not fit."""
    parts = PurePosixPath(key).parts
    if len(parts) != 5 or parts[0] != "incoming" or not _DAY_RE.match(parts[2]):
        return None
    try:
        day = date.fromisoformat(parts[2])
    except ValueError:
        return None
    folder, name = parts[3], parts[4]
    if folder == "exams" and name.endswith(".json"):
        kind = "exam"
    elif folder == "submissions" and name.lower().endswith(SUBMISSION_SUFFIXES):
        kind = "submissions"
    else:
        kind = "unknown"
    return IncomingPath(parts[1], day, kind, name)


def normalise_answer(text: str) -> str:
    """The form identical answers are merged on: trimmed, lower-cased, single spaces."""
    return " ".join(text.split()).lower()


def answer_sha256(text: str) -> str:
    """Hash of the normalised answer."""
    return hashlib.sha256(normalise_answer(text).encode()).hexdigest()


# ---------------------------------------------------------------- exam definitions

@dataclass
class ExamDefinition:
    """A validated exam: id, title and its questions as dicts ready for the questions table."""

    exam_id: str
    title: str
    questions: list[dict] = field(default_factory=list)


def _check_answer_key(qtype: str, q: dict, where: str, problems: list[tuple[str, str]]) -> None:
    key = q.get("answer_key")
    if qtype == "multiple_choice":
        letters = key if isinstance(key, list) else [key]
        if not letters or not all(isinstance(k, str) and k.strip() for k in letters):
            problems.append((f"{where}.answer_key", "must be an option letter or a list of letters"))
            return
        options = q.get("options")
        if options is not None and (not isinstance(options, list) or not all(isinstance(o, str) for o in options)):
            problems.append((f"{where}.options", "must be a list of option letters"))
        elif options is not None and not set(letters) <= set(options):
            problems.append((f"{where}.answer_key", f"{key!r} is not among options {options!r}"))
    elif qtype == "true_false" and not isinstance(key, bool):
        problems.append((f"{where}.answer_key", "must be true or false"))
    elif qtype == "numeric":
        if isinstance(key, bool) or not isinstance(key, (int, float)):
            problems.append((f"{where}.answer_key", "must be a number"))
        tol = q.get("tolerance", 0)
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or tol < 0:
            problems.append((f"{where}.tolerance", "must be a number >= 0"))


def _check_question(index: int, q: object, seen: set[str], problems: list[tuple[str, str]]) -> dict | None:
    where = f"questions[{index}]"
    if not isinstance(q, dict):
        problems.append((where, "must be an object"))
        return None
    qid = q.get("question_id")
    if not isinstance(qid, str) or not _ID_RE.match(qid):
        problems.append((f"{where}.question_id", "required, [A-Za-z0-9._-]{1,64}"))
    elif qid in seen:
        problems.append((f"{where}.question_id", f"duplicate question_id {qid!r}"))
    seen.add(str(qid))
    qtype = q.get("type")
    if qtype not in QUESTION_TYPES:
        problems.append((f"{where}.type", f"must be one of {sorted(QUESTION_TYPES)}"))
        return None
    points = q.get("max_points")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
        problems.append((f"{where}.max_points", "required, a number > 0"))
    if qtype in RULE_TYPES:
        _check_answer_key(qtype, q, where, problems)
    if qtype in FREE_TEXT_TYPES:
        for name in ("rubric", "reference_answer"):
            if not isinstance(q.get(name), str) or not q[name].strip():
                problems.append((f"{where}.{name}", f"required for {qtype}"))
    for name in ("prompt", "rubric", "reference_answer"):
        if q.get(name) is not None and not _clean_text(q[name]):
            problems.append((f"{where}.{name}", "must be text without NUL characters or broken Unicode"))
    return {
        "question_id": qid, "position": index + 1, "qtype": qtype, "max_points": points,
        "prompt": str(q.get("prompt") or ""), "options": q.get("options"), "answer_key": q.get("answer_key"),
        "tolerance": q.get("tolerance", 0) if qtype == "numeric" else 0,
        "rubric": q.get("rubric"), "reference_answer": q.get("reference_answer"),
    }


def parse_exam(file_name: str, data: bytes) -> tuple[ExamDefinition | None, list[Reject]]:
    """Validate an exam definition. Any problem rejects the whole exam (it cannot be half-known)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [Reject(file_name, None, None, None, f"not a UTF-8 JSON document: {exc}")]
    if not isinstance(doc, dict):
        return None, [Reject(file_name, None, None, None, "the exam definition must be a JSON object")]
    problems: list[tuple[str, str]] = []
    exam_id = doc.get("exam_id")
    if not isinstance(exam_id, str) or not _ID_RE.match(exam_id):
        problems.append(("exam_id", "required, [A-Za-z0-9._-]{1,64}"))
    questions = doc.get("questions")
    if not isinstance(questions, list) or not questions:
        problems.append(("questions", "required, a non-empty list"))
        questions = []
    seen: set[str] = set()
    parsed = [_check_question(i, q, seen, problems) for i, q in enumerate(questions)]
    if problems:
        return None, [Reject(file_name, None, fld, None, reason) for fld, reason in problems]
    title = str(doc.get("title") or exam_id)
    return ExamDefinition(exam_id, title, [q for q in parsed if q is not None]), []


# ---------------------------------------------------------------- submission files

def _clean_text(value: object) -> bool:
    """Text PostgreSQL can store: a str with no NUL character and no lone surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rows_csv(data: bytes) -> Iterator[dict]:
    # Python's csv caps a field at 128 KiB and would reject the whole file; the per-row
    # MAX_ANSWER_CHARS check is the limit that applies, with a reason naming the row.
    csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))
    text = data.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in SUBMISSION_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise FileRejected(f"missing column(s) {missing}; the header has {reader.fieldnames}")
    yield from reader


def _rows_jsonl(data: bytes) -> Iterator[dict | str]:
    text = data.decode("utf-8")
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"not valid JSON: {exc.msg}"
            continue
        yield obj if isinstance(obj, dict) else "each line must be a JSON object"


def _rows_parquet(data: bytes) -> Iterator[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise FileRejected(f"not a readable Parquet file: {exc}") from exc
    missing = [c for c in SUBMISSION_COLUMNS if c not in table.column_names]
    if missing:
        raise FileRejected(f"missing column(s) {missing}; the file has {table.column_names}")
    for batch in table.select(list(SUBMISSION_COLUMNS)).to_batches(max_chunksize=10_000):
        yield from batch.to_pylist()


def read_rows(file_name: str, data: bytes) -> Iterator[dict | str]:
    """Raw rows of a submissions file by its suffix; a str item is a row that could not be parsed."""
    suffix = PurePosixPath(file_name).suffix.lower()
    readers = {".csv": _rows_csv, ".jsonl": _rows_jsonl, ".parquet": _rows_parquet}
    if suffix not in readers:
        raise FileRejected(f"unsupported file type {suffix!r}; use .csv, .jsonl or .parquet")
    try:
        yield from readers[suffix](data)
    except UnicodeDecodeError as exc:
        raise FileRejected(f"not UTF-8 text: {exc}") from exc
    except csv.Error as exc:
        raise FileRejected(f"not a readable CSV file: {exc}") from exc


@dataclass(frozen=True)
class AnswerRow:
    """One validated answer row, ready to stage."""

    row: int
    submission_id: str
    student_id: str
    exam_id: str
    question_id: str
    answer: str
    submitted_at: datetime


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from Parquet/pandas
        return ""
    return str(value).strip() if not isinstance(value, str) else value


def validate_row(file_name: str, row_number: int, raw: dict, questions: dict[str, set[str]]) -> AnswerRow | Reject:
    """Check one row against the contract and the known exams (exam_id -> its question ids)."""

    def bad(fld: str, reason: str) -> Reject:
        value = _text(raw.get(fld))
        return Reject(file_name, row_number, fld, value[:200], reason)

    for fld in SUBMISSION_COLUMNS:
        if raw.get(fld) is not None and not isinstance(raw.get(fld), datetime) and not _clean_text(_text(raw[fld])):
            return Reject(file_name, row_number, fld, None, "contains a NUL character or broken Unicode")
    for fld in ("submission_id", "student_id", "exam_id", "question_id"):
        value = _text(raw.get(fld)).strip()
        if not value:
            return bad(fld, "required, is empty")
        if len(value) > MAX_ID_CHARS:
            return bad(fld, f"longer than {MAX_ID_CHARS} characters")
    exam_id = _text(raw["exam_id"]).strip()
    if exam_id not in questions:
        return bad("exam_id", "unknown exam: no definition under exams/ for it")
    question_id = _text(raw["question_id"]).strip()
    if question_id not in questions[exam_id]:
        return bad("question_id", f"not a question of exam {exam_id!r}")
    answer = _text(raw.get("answer"))
    if len(answer) > MAX_ANSWER_CHARS:
        return Reject(file_name, row_number, "answer", answer[:80] + "…",
                      f"longer than {MAX_ANSWER_CHARS} characters ({len(answer)})")
    stamp = raw.get("submitted_at")
    try:
        submitted_at = stamp if isinstance(stamp, datetime) else datetime.fromisoformat(_text(stamp).strip())
    except ValueError:
        return bad("submitted_at", "not an ISO 8601 timestamp")
    if submitted_at.tzinfo is None:
        return bad("submitted_at", "has no UTC offset (e.g. +05:30)")
    return AnswerRow(row_number, _text(raw["submission_id"]).strip(), _text(raw["student_id"]).strip(),
                     exam_id, question_id, answer, submitted_at)


def validate_submissions(file_name: str, data: bytes,
                         questions: dict[str, set[str]]) -> tuple[list[AnswerRow], list[Reject]]:
    """All rows of a submissions file: the good ones and a reject for each bad one.

    Raises FileRejected when the file as a whole cannot be read.
    """
    good: list[AnswerRow] = []
    rejects: list[Reject] = []
    for number, raw in enumerate(read_rows(file_name, data), start=1):
        if isinstance(raw, str):
            rejects.append(Reject(file_name, number, None, None, raw))
            continue
        result = validate_row(file_name, number, raw, questions)
        (rejects if isinstance(result, Reject) else good).append(result)
    return good, rejects
