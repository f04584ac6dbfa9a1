"""The exam file contract (docs/file-contract.md): parse and validate exam and submission files.

Pure functions, no I/O: they take bytes and return good records plus rejects that name the file,
the row and the field, so that one bad row never costs the good rows beside it.

The rule they enforce: every value from outside is checked for type, finiteness, range and
storability here, before anything reaches the database. A bad value is a named reject of its row
(or of its exam file), never a failed file or task. The checks of one column live in one function
(`check_text`, `check_timestamp`), so that a vectorised reader can call them column by column.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import PurePosixPath

from gradeflow.core.text import clean_text
from gradeflow.intake.exam_contract import ExamDefinition as ExamDefinition  # re-exported: the contract's one entry
from gradeflow.intake.exam_contract import parse_exam as parse_exam
from gradeflow.intake.rejects import FileRejected as FileRejected  # re-exported
from gradeflow.intake.rejects import Reject as Reject  # re-exported

SUBMISSION_COLUMNS = ("submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at")
ID_COLUMNS = ("submission_id", "student_id", "exam_id", "question_id")
SUBMISSION_SUFFIXES = (".csv", ".jsonl", ".parquet")
REVIEW_SUFFIXES = (".csv", ".jsonl")  # reviewers' files (gradeflow.intake.review_files)
MAX_ANSWER_CHARS = 20_000
MAX_ID_CHARS = 128
# submitted_at: an instant in this range, with an offset PostgreSQL can store (|offset| < 16 h).
EARLIEST_SUBMISSION = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_SUBMISSION = datetime(2100, 1, 1, tzinfo=UTC)
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59, seconds=59)
# The longest text a CSV record can have and still be a valid row (every quote of the answer and ids doubled,
# with room to spare): a quoted field still open past it is a broken quote, not a long answer.
MAX_CSV_RECORD_CHARS = 2 * MAX_ANSWER_CHARS + 8 * MAX_ID_CHARS + 1_000
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")



@dataclass(frozen=True)
class IncomingPath:
    """What an incoming key says: institution prefix, exam day and kind of file."""

    prefix: str
    exam_day: date
    kind: str  # exam | submissions | reviews | unknown
    name: str



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
    elif folder == "reviews" and name.lower().endswith(REVIEW_SUFFIXES):
        kind = "reviews"
    else:
        kind = "unknown"
    return IncomingPath(parts[1], day, kind, name)


def normalise_answer(text: str) -> str:
    """The form identical answers are merged on: trimmed, lower-cased, single spaces."""
    return " ".join(text.split()).lower()


def answer_sha256(text: str) -> str:
    """Hash of the normalised answer."""
    return hashlib.sha256(normalise_answer(text).encode()).hexdigest()


def shown(value: object, limit: int = 200) -> str | None:
    """A value as it may be written into a report or the rejected_rows table: storable text
    (NUL and broken Unicode escaped), cut to `limit` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = repr(value)
    text = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= limit else text[:limit] + "…"


# ---------------------------------------------------------------- reading rows

@dataclass(frozen=True)
class BadRow:
    """A row that could not be read as a record (broken quoting, wrong field count, not JSON)."""

    reason: str
    value: str | None = None
    field: str | None = None


class JsonNumber(str):
    """A number in a JSON line, kept exactly as written (it is loaded as that text)."""


@dataclass(frozen=True)
class NonFinite:
    """NaN or Infinity in a JSON line (not JSON, but Python's parser accepts it)."""

    token: str


def _check_header(names: list[str], where: str) -> None:
    counts = {n: names.count(n) for n in names}
    doubled = [n for n, c in counts.items() if c > 1]
    if doubled:
        name = doubled[0]
        places = [str(i + 1) for i, n in enumerate(names) if n == name]
        raise FileRejected(f"column {name!r} appears {counts[name]} times in the {where} (columns "
                           f"{', '.join(places)}); each column must appear once (which one holds the data?)")
    missing = [c for c in SUBMISSION_COLUMNS if c not in names]
    if missing:
        raise FileRejected(f"missing column(s) {missing}; the {where} has {names}")


def _csv_error(exc: csv.Error, first: int, line: int) -> str:
    if "unexpected end of data" in str(exc):
        return (f"a quoted field opens in this row (line {first + 1} of the file) and is never closed; "
                f"the row is rejected and reading resumes at line {first + 2}")
    return f"broken CSV quoting in this row (line {line} of the file): {exc}; reading resumes at line {first + 2}"


def _rows_csv(text: str) -> Iterator[dict | BadRow]:
    """Rows of a CSV file as dicts by header name; a record that cannot be read is a BadRow."""
    records = _csv_records(text)
    header = next(records)
    for record in records:
        yield record if isinstance(record, BadRow) else dict(zip(header, record, strict=True))


def _csv_records(text: str) -> Iterator[list[str] | BadRow]:
    """The header of a CSV text, then its records (each as long as the header) or a BadRow each."""
    return csv_records(io.StringIO(text, newline=""))  # ends lines at \n, \r\n or \r only


def csv_records(source: Iterable[str]) -> Iterator[list[str] | BadRow]:
    """The header of a CSV file given as lines (ends kept), then its records (each as long as the header)
    or a BadRow each; only the lines of the record being read are held, so a file can be streamed.

    A quote that opens a field and is not closed on its line makes the record span lines. That is kept
    only while it is believable: when the record's first line, or a line it would swallow, reads on its
    own as a complete row (the header's field count and a timestamp under `submitted_at`), the quote is
    taken as a stray one (`12"` in an unquoted export) and the record is not glued: its first line is a
    named reject and reading starts again at the next line, so each swallowed line is read as its own row
    (split back). The same happens to a quoted field still open after MAX_CSV_RECORD_CHARS characters (no
    valid row is that long), one never closed before the end of the file, and a record spanning several
    lines whose field count is wrong. There is no limit on how many times this happens: every physical
    data row is one row of the file's counts, loaded or rejected.
    """
    # Python's csv caps a field at 128 KiB and would reject the whole file; the per-row
    # MAX_ANSWER_CHARS check is the limit that applies, with a reason naming the row.
    csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))
    lines = iter(source)
    kept: list[str] = []  # lines from absolute index `base` on
    base = 0
    record = _RecordWatch()

    def lines_from(start: int) -> Iterator[str]:
        i = start
        while True:
            if i - base < len(kept):
                line = kept[i - base]
            else:
                line = next(lines, None)
                if line is None:
                    return
                kept.append(line)
            if header is not None and i > record.first:  # the reader wants one more line for an open quote
                record.check(kept[record.first - base], line, i, header)
            yield line
            i += 1

    def forget_before(index: int) -> None:
        nonlocal base
        if index > base:
            del kept[:index - base]
            base = index

    header: list[str] | None = None
    pos = 0
    while True:
        reader = csv.reader(lines_from(pos), strict=True)
        for fields, first, last, error in _records(reader, pos, record):
            if header is None:
                if error:
                    raise FileRejected(f"the header row cannot be read: {error}")
                if fields:  # blank lines before the header are skipped
                    _check_header(fields, "header")
                    header = fields
                    yield header
                forget_before(last)
                continue
            if not error and not fields:
                forget_before(last)
                continue  # a blank line is not a row
            if not error and len(fields) == len(header):
                forget_before(last)
                yield fields
                continue
            if not error:
                error = f"the row has {len(fields)} field(s) where {len(header)} are expected ({', '.join(header)})"
                if last - first <= 1:  # a short or long row on one line: nothing else was swallowed
                    forget_before(last)
                    yield BadRow(error, shown(",".join(fields)))
                    continue
                error += f"; it spans lines {first + 1}-{last}, so reading resumes at line {first + 2}"
            yield BadRow(error, shown(kept[first - base]))
            pos = first + 1
            forget_before(pos)
            break
        else:
            break
    if header is None:
        raise FileRejected("the file has no header row (it holds only blank lines)")


class _StrayQuote(Exception):
    """Raised from inside the csv reader's line source: the record being read must not span more lines."""


class _RecordWatch:
    """The first line of the record being read, and how long it has grown past that line."""

    def __init__(self) -> None:
        self.first = 0
        self.chars = 0

    def start(self, first: int) -> None:
        self.first, self.chars = first, 0

    def check(self, opening: str, line: str, index: int, header: list[str]) -> None:
        """Stop the record when its quote is doubtful (see csv_records) or it is longer than any valid row."""
        self.chars += len(line)
        where = f"line {self.first + 1} of the file"
        if self.chars > MAX_CSV_RECORD_CHARS:
            raise _StrayQuote(f"a quoted field opens in this row ({where}) and is never closed within "
                              f"{MAX_CSV_RECORD_CHARS:,} characters (no valid row is that long); the row is "
                              f"rejected and reading resumes at line {self.first + 2}")
        for candidate, number in ((opening, self.first), (line, index)):
            if _reads_as_a_row(candidate, header):
                raise _StrayQuote(
                    f"a quote opens a field in this row ({where}) and is never closed on its line, and line "
                    f"{number + 1} reads as a complete row of its own: the quote is taken as a stray quote and the "
                    f"row is rejected rather than glued to the lines after it (a field holding a quote must be "
                    f"wrapped in quotes with the quote doubled, e.g. \"12\"\"\"); reading resumes at line "
                    f"{self.first + 2}")


def _reads_as_a_row(line: str, header: list[str]) -> bool:
    """Whether one physical line, read alone (quotes as CSV or as plain characters), is a complete row:
    the header's field count, with an ISO 8601 timestamp under `submitted_at`."""
    where = header.index("submitted_at")
    for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE):
        try:
            fields = next(csv.reader([line.rstrip("\r\n")], quoting=quoting), [])
        except csv.Error:
            continue
        if len(fields) == len(header):
            try:
                datetime.fromisoformat(fields[where].strip())
            except ValueError:
                continue
            return True
    return False


def _records(reader, pos: int, record: _RecordWatch) -> Iterator[tuple[list[str], int, int, str | None]]:
    """(fields, first line index, line index after it, error) per record of a strict csv reader."""
    while True:
        first = pos + reader.line_num
        record.start(first)
        try:
            fields = next(reader)
        except StopIteration:
            return
        except _StrayQuote as exc:
            yield [], first, first + 1, str(exc)
            return
        except csv.Error as exc:
            yield [], first, pos + reader.line_num, _csv_error(exc, first, pos + reader.line_num)
            return
        yield fields, first, pos + reader.line_num, None


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [k for k, _ in pairs]
    doubled = sorted({k for k in keys if keys.count(k) > 1})
    if doubled:
        raise _DuplicateKey(doubled[0])
    return dict(pairs)


class _DuplicateKey(ValueError):
    pass


def _rows_jsonl(text: str) -> Iterator[dict | BadRow]:
    # Only \n (and \r\n) end a line: U+2028, U+0085 and friends are valid inside a JSON string.
    for line in _jsonl_lines(text):
        yield _json_row(line)


def _jsonl_lines(text: str) -> Iterator[str]:
    """The lines of a JSONL text that are rows (blank lines are not)."""
    for line in text.split("\n"):
        line = line.removesuffix("\r")
        if line.strip(" \t\r"):
            yield line


def _json_row(line: str) -> dict | BadRow:
    """One JSONL line as the object it holds, or a BadRow saying why it is not one."""
    try:
        obj = json.loads(line, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=NonFinite,
                         object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        return BadRow(f"key {exc.args[0]!r} appears more than once in this line's object", shown(line),
                      field=shown(exc.args[0]))
    except json.JSONDecodeError as exc:
        return BadRow(f"not valid JSON: {exc.msg} (column {exc.colno})", shown(line))
    except (ValueError, RecursionError) as exc:  # e.g. nesting too deep
        return BadRow(f"not readable JSON: {type(exc).__name__}", shown(line))
    return obj if isinstance(obj, dict) else BadRow("each line must be a JSON object", shown(line))


def _column_values(column) -> list:
    """Python values of one Arrow column; a value Python cannot represent becomes a BadRow."""
    try:
        return column.to_pylist()
    except (ValueError, OverflowError, ArithmeticError):
        values = []
        for item in column:
            try:
                values.append(item.as_py())
            except (ValueError, OverflowError, ArithmeticError) as exc:
                values.append(BadRow(f"a {column.type} value Python cannot read: {exc}"))
        return values


def _rows_parquet(data: bytes) -> Iterator[dict | BadRow]:
    for batch in _parquet_batches(data, 10_000):
        yield from _batch_rows(batch)


def _batch_rows(batch) -> Iterator[dict | BadRow]:
    """The rows of one Arrow record batch as dicts of Python values (the per-row way)."""
    columns = {name: _column_values(batch.column(name)) for name in SUBMISSION_COLUMNS}
    for i in range(batch.num_rows):
        yield {name: values[i] for name, values in columns.items()}


def _parquet_batches(data, size: int):
    """The record batches of a Parquet file (bytes or a seekable binary file; the six columns), one at a time."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data)
        names = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise FileRejected(f"not a readable Parquet file: {exc}") from exc
    _check_header(names, "file's schema")
    try:
        yield from parquet.iter_batches(batch_size=size, columns=list(SUBMISSION_COLUMNS))
    except (OSError, ValueError, TypeError, NotImplementedError) as exc:  # corrupt pages, unsupported encodings
        raise FileRejected(f"not a readable Parquet file: {exc}") from exc


def read_rows(file_name: str, data: bytes) -> Iterator[dict | BadRow]:
    """Raw rows of a submissions file by its suffix; a BadRow item is a row that could not be parsed."""
    suffix, text = _open_submissions(file_name, data)
    if suffix == ".parquet":
        yield from _rows_parquet(data)
        return
    yield from (_rows_csv(text) if suffix == ".csv" else _rows_jsonl(text))


SNIFF_BYTES = 64 * 1024  # the head of a file looked at for a wrong kind of file before it is read


def sniff_problem(suffix: str, head: bytes) -> str | None:
    """What is plainly wrong with a submissions file, judged by its first bytes, in words that say so:
    a Parquet file under a text suffix, UTF-16 text (with or without a byte order mark), JSON Lines whose
    lines end with a carriage return only. None when nothing is. The per-row and the column-wise readers
    both call it on the same bytes, so they give the same message."""
    if suffix != ".parquet" and head.startswith(b"PAR1"):
        return (f"this is a Parquet file (it starts with PAR1) named {suffix}: rename it to .parquet "
                "(the suffix decides how a file is read)")
    if suffix == ".parquet":
        return None
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8"
    sample = head[:2000]
    if len(sample) >= 8:
        half = len(sample) // 2
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        if max(even, odd) >= 0.4 * half and min(even, odd) <= 0.1 * half:
            return ("UTF-16 text without a byte order mark (every other byte is NUL): save it as UTF-8 "
                    "(with or without a byte order mark)")
    if suffix == ".jsonl" and b"\r" in head.rstrip(b"\r") and b"\n" not in head:
        return ("the lines end with a carriage return only (CR, as old Mac files do): JSON Lines need \\n (or "
                "\\r\\n) line ends; save the file with those")
    return None


def _open_submissions(file_name: str, data: bytes) -> tuple[str, str | None]:
    """The file's suffix and, for a text format, its text; FileRejected when it cannot be read at all."""
    suffix = PurePosixPath(file_name).suffix.lower()
    if suffix not in SUBMISSION_SUFFIXES:
        raise FileRejected(f"unsupported file type {suffix!r}; use .csv, .jsonl or .parquet")
    if not data:
        raise FileRejected("the file is empty (0 bytes)")
    problem = sniff_problem(suffix, bytes(data[:SNIFF_BYTES]))
    if problem:
        raise FileRejected(problem)
    if suffix == ".parquet":
        return suffix, None
    try:
        text = bytes(data).decode("utf-8-sig")  # a UTF-8 byte order mark is accepted and dropped
    except UnicodeDecodeError as exc:
        raise FileRejected(f"not UTF-8 text: {exc}") from exc
    if not text.strip():
        raise FileRejected("the file holds no data (only a byte order mark or blank space)")
    return suffix, text


# ---------------------------------------------------------------- checking values

@dataclass(frozen=True)
class Problem:
    """Why one value is refused."""

    reason: str


_KINDS = {dict: "an object", list: "a list", tuple: "a list", set: "a set"}


def as_text(value: object) -> str | None | Problem:
    """A scalar value as the text it is loaded as; None when absent; a Problem when it is not text.

    Numbers are accepted as the digits they were written with (JSON) or as exact decimal text without an
    exponent (Parquet); bytes are decoded as UTF-8 when they are valid UTF-8; booleans read `true`/`false`.
    Objects, lists, NaN/Infinity and bytes that are not UTF-8 are refused, naming their type.
    """
    if value is None or isinstance(value, str):
        return None if value is None else str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None  # Parquet's (pandas') marker for a missing value in a float column
        if not math.isfinite(value):
            return Problem(f"{value} is not a finite number")
        # exact decimal text, never an exponent: 1e20 -> 100000000000000000000, 1.5e-07 -> 0.00000015
        return str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else Problem(f"{value} is not a finite number")
    if isinstance(value, NonFinite):
        return Problem(f"{value.token} is not a finite number")
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return Problem("a binary value that is not UTF-8 text")
    if isinstance(value, BadRow):
        return Problem(value.reason)
    kind = _KINDS.get(type(value), f"a {type(value).__name__} value")
    return Problem(f"must be text, got {kind}")


def check_text(column: str, value: object) -> str | Problem:
    """One text column of a submission row: type, storability and length (ids trimmed and required)."""
    if column in ID_COLUMNS and isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return Problem(f"the number {value!r} is not a whole number: an id must be text or a whole number "
                       "(a spreadsheet export with numeric ids may have lost digits)")
    text = as_text(value)
    if isinstance(text, Problem):
        return text
    text = text or ""
    if not clean_text(text):
        return Problem("contains a NUL character or broken Unicode")
    if column == "answer":
        if len(text) > MAX_ANSWER_CHARS:
            return Problem(f"longer than {MAX_ANSWER_CHARS} characters ({len(text)})")
        return text
    text = text.strip()
    if not text:
        return Problem("required, is empty")
    if len(text) > MAX_ID_CHARS:
        return Problem(f"longer than {MAX_ID_CHARS} characters")
    return text


def check_timestamp(value: object) -> datetime | Problem:
    """`submitted_at`: an ISO 8601 instant with a UTC offset PostgreSQL can store, in range; in UTC."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, date):
        return Problem("a date without a time and UTC offset")
    else:
        text = as_text(value)
        if isinstance(text, Problem):
            return text
        if not text or not text.strip():
            return Problem("required, is empty")
        if not clean_text(text):
            return Problem("contains a NUL character or broken Unicode")
        try:
            stamp = datetime.fromisoformat(text.strip())
        except ValueError:
            return Problem("not an ISO 8601 timestamp")
    offset = stamp.utcoffset()
    if offset is None:
        return Problem("has no UTC offset (e.g. +05:30)")
    if abs(offset) > MAX_UTC_OFFSET:
        return Problem(f"UTC offset {_offset_text(offset)} is out of range (-15:59 to +15:59)")
    try:
        utc = stamp.astimezone(UTC)
    except OverflowError:
        return Problem("out of range (before year 1 or after 9999 in UTC)")
    if not EARLIEST_SUBMISSION <= utc < LATEST_SUBMISSION:
        return Problem(f"out of range: {utc.isoformat()} is not between {EARLIEST_SUBMISSION:%Y-%m-%d} and "
                       f"{LATEST_SUBMISSION:%Y-%m-%d} (UTC)")
    return utc


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = int(abs(offset).total_seconds()) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# ---------------------------------------------------------------- submission rows

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


def validate_row(file_name: str, row_number: int, raw: dict, questions: dict[str, set[str]],
                 rejected_exams: dict[str, str] | None = None) -> AnswerRow | Reject:
    """Check one row against the contract and the known exams (exam_id -> its question ids).

    `rejected_exams` maps an exam id whose file was rejected to why, so that its answers say so.
    """
    values: dict[str, object] = {}
    for column in SUBMISSION_COLUMNS:
        raw_value = raw.get(column)
        value = check_timestamp(raw_value) if column == "submitted_at" else check_text(column, raw_value)
        if isinstance(value, Problem):
            return Reject(file_name, row_number, column, shown(as_text_or_repr(raw_value)), value.reason)
        values[column] = value
    exam_id, question_id = values["exam_id"], values["question_id"]
    if exam_id not in questions:
        why = (rejected_exams or {}).get(exam_id)
        reason = (f"exam {exam_id!r} is not defined: its file {why}" if why
                  else "unknown exam: no definition under exams/ for it")
        return Reject(file_name, row_number, "exam_id", exam_id, reason, waits=True)
    if question_id not in questions[exam_id]:
        return Reject(file_name, row_number, "question_id", question_id,
                      f"not a question of exam {exam_id!r}", waits=True)
    return AnswerRow(row_number, **values)


def as_text_or_repr(value: object) -> str | None:
    """The value as text for a report: its text when it has one, else its JSON form (cut short)."""
    text = as_text(value)
    if not isinstance(text, Problem):
        return text
    if isinstance(value, BadRow):
        return value.value
    return _json_form(value, 0)


def _json_form(value: object, depth: int) -> str:
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:10]
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_json_form(v, depth + 1)}"
                               for k, v in items) + (", …}" if len(value) > 10 else "}")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json_form(v, depth + 1) for v in value[:10]) + (", …]" if len(value) > 10 else "]")
    if isinstance(value, JsonNumber | NonFinite):
        return str(value) if isinstance(value, JsonNumber) else value.token
    if isinstance(value, str):
        return json.dumps(value[:200], ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value)[:200]


def validate_submissions(file_name: str, data: bytes, questions: dict[str, set[str]],
                         rejected_exams: dict[str, str] | None = None) -> tuple[list[AnswerRow], list[Reject]]:
    """All rows of a submissions file: the good ones and a reject for each bad one.

    Raises FileRejected when the file as a whole cannot be read.
    """
    good: list[AnswerRow] = []
    rejects: list[Reject] = []
    for result in iter_submissions(file_name, data, questions, rejected_exams):
        (rejects if isinstance(result, Reject) else good).append(result)
    return good, rejects


def iter_submissions(file_name: str, data: bytes, questions: dict[str, set[str]],
                     rejected_exams: dict[str, str] | None = None) -> Iterator[AnswerRow | Reject]:
    """The rows of a submissions file one by one, each a good AnswerRow or a Reject, in file order.

    A generator: the caller works through a big file in bounded chunks (gradeflow.intake.ingest) and never
    holds every validated row at once. Raises FileRejected when the file as a whole cannot be read
    (possibly after some rows were yielded: the caller then discards what it staged).
    """
    for number, raw in enumerate(read_rows(file_name, data), start=1):
        if isinstance(raw, BadRow):
            yield Reject(file_name, number, raw.field, raw.value, raw.reason)
            continue
        yield validate_row(file_name, number, raw, questions, rejected_exams)
