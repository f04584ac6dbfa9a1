"""The file contract over Arrow columns: a submissions file validated a chunk at a time.

The same contract as gradeflow.intake.contract (which stays the reference, row by row), only faster: each
chunk of rows is read into Arrow string columns and checked column-wise (pyarrow.compute) for the
common case, a value that is plainly good. Every row a fast check cannot vouch for (a bad value, an
unusual but valid timestamp, an id with spaces around it, an unknown exam) goes through
`contract.validate_row`, and a chunk the fast reader cannot read exactly as the per-row reader
would (a JSONL line with an extra key, a number or a broken line; a Parquet column that is not
text) is read the per-row way. So every reject carries the very message the per-row path gives;
tests/unit/test_contract_columns.py checks both paths agree on generated and arbitrary files.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from gradeflow.intake.contract import (
    EARLIEST_SUBMISSION,
    ID_COLUMNS,
    LATEST_SUBMISSION,
    MAX_ANSWER_CHARS,
    MAX_ID_CHARS,
    SNIFF_BYTES,
    SUBMISSION_COLUMNS,
    SUBMISSION_SUFFIXES,
    BadRow,
    FileRejected,
    Reject,
    _batch_rows,
    _json_row,
    _parquet_batches,
    csv_records,
    sniff_problem,
    validate_row,
)

# Python's str.isspace() characters (what str.strip() removes); a unit test checks the list.
PY_SPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
            "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
# A timestamp the fast path vouches for: the common ISO 8601 form datetime.fromisoformat reads the same way,
# with an offset in range (-15:59 to +15:59). Anything else is checked by contract.check_timestamp.
FAST_STAMP = (r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
              r"(\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])$")
STAMP_TYPE = pa.timestamp("us", tz="UTC")
GOOD_SCHEMA = pa.schema([("row_number", pa.int32()), *((c, pa.string()) for c in SUBMISSION_COLUMNS[:5]),
                         ("submitted_at", STAMP_TYPE)])
_STRING_SCHEMA = pa.schema([(c, pa.string()) for c in SUBMISSION_COLUMNS])


@dataclass
class ValidChunk:
    """One chunk of a submissions file: rows read, the good rows as columns (GOOD_SCHEMA), the rejects."""

    rows: int
    good: pa.Table
    rejects: list[Reject] = field(default_factory=list)


@dataclass
class _RawChunk:
    """Rows as read: a table of six string columns with their row numbers, and rows read one by one."""

    numbers: list[int] = field(default_factory=list)
    table: pa.Table | None = None
    rows: list[tuple[int, dict | BadRow]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.numbers) + len(self.rows)


CHUNK_CHARS = 16 * 1024 * 1024  # text read into one chunk at most: memory follows bytes, not only rows
# Python text held at a time while a chunk is read: every PIECE_CHARS characters of values the rows read so far
# become Arrow columns (a chunk is a table of such pieces), so a chunk is held once, in Arrow, not also in Python.
PIECE_CHARS = 1024 * 1024


def validate_chunks(file_name: str, data: bytes | BinaryIO, questions: dict[str, set[str]],
                    rejected_exams: dict[str, str] | None = None, size: int = 50_000,
                    max_chars: int = CHUNK_CHARS) -> Iterator[ValidChunk]:
    """A submissions file (bytes, or a seekable binary file read as a stream) in chunks of at most `size`
    rows and about `max_chars` characters of values (a chunk ends at the row that reaches it), each
    validated: good rows and named rejects. Memory holds a chunk, not the file, whatever its rows' length:
    the raw chunk is let go before the valid one is handed over, and Arrow's pool returns what it freed to
    the system before the next chunk is read (the caller drops its chunk before asking for the next).

    Raises FileRejected when the file as a whole cannot be read (possibly after some chunks).
    """
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    suffix = _check_file(file_name, stream)
    raw = (_parquet_chunks(stream, size, max_chars) if suffix == ".parquet"
           else _csv_chunks(stream, size, max_chars) if suffix == ".csv" else _jsonl_chunks(stream, size, max_chars))
    check = _Checker(file_name, questions, rejected_exams or {})
    for chunk in raw:
        valid, chunk = check(chunk), None
        yield valid
        valid = None
        release_memory()


@contextlib.contextmanager
def system_memory_pool() -> Iterator[None]:
    """Arrow allocates from the system allocator (glibc malloc) while a file is read and staged, then the default
    pool again; big blocks are mapped on their own (fixed_mmap_threshold). Measured (docs/performance.md, "Ingest
    memory"): with Arrow's default mimalloc pool the pages freed between chunks and pieces stay resident even
    after release_unused(), and with glibc's adaptive threshold the chunk's 1 MiB Arrow pieces land in the heap
    between freed Python text, which then cannot be given back: both add one to two chunks of resident memory."""
    fixed_mmap_threshold()
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


MMAP_THRESHOLD = 512 * 1024  # kept fixed: the 1 MiB Arrow pieces get their own mappings (128 KiB: ~10% more CPU)


def fixed_mmap_threshold() -> bool:
    """glibc: serve every allocation of MMAP_THRESHOLD bytes or more by its own mapping, returned to the system
    when freed, for the rest of the process (mallopt(M_MMAP_THRESHOLD); glibc otherwise raises the threshold to
    the largest block freed so far, up to 32 MiB, and such blocks then stay in the heap). False where it is not
    glibc (nothing changes)."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError):
        return False


def release_memory() -> None:
    """Give freed memory back to the system: Arrow's pool (mimalloc or jemalloc keep freed pages a while) and
    the C heap Python's larger objects live in (the system pool's release is glibc's malloc_trim)."""
    pa.default_memory_pool().release_unused()
    pa.system_memory_pool().release_unused()


# ---------------------------------------------------------------- reading a stream

def _check_file(file_name: str, stream: BinaryIO) -> str:
    """The file's suffix; FileRejected (with contract.read_rows' very messages) when it cannot be read at all.

    A text file is read through once first, in blocks: it must be UTF-8 (the error names the position
    a whole-file decode names) and hold more than blank space.
    """
    suffix = PurePosixPath(file_name).suffix.lower()
    if suffix not in SUBMISSION_SUFFIXES:
        raise FileRejected(f"unsupported file type {suffix!r}; use .csv, .jsonl or .parquet")
    stream.seek(0, io.SEEK_END)
    empty = stream.tell() == 0
    stream.seek(0)
    if empty:
        raise FileRejected("the file is empty (0 bytes)")
    problem = sniff_problem(suffix, stream.read(SNIFF_BYTES))
    stream.seek(0)
    if problem:
        raise FileRejected(problem)
    if suffix != ".parquet" and not _utf8_text(stream):
        raise FileRejected("the file holds no data (only a byte order mark or blank space)")
    return suffix


def _utf8_text(stream: BinaryIO, block: int = 1 << 18) -> bool:
    """Whether a UTF-8 stream holds any text but blank space; FileRejected when it is not UTF-8. Rewinds."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    fed, seen, first = 0, False, True
    while True:
        chunk = stream.read(max(block, len(codecs.BOM_UTF8)) if first else block)
        final = not chunk
        if first and chunk.startswith(codecs.BOM_UTF8):  # dropped, as utf-8-sig does (positions follow it)
            chunk = chunk[len(codecs.BOM_UTF8):]
        first = False
        held = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            start, end = fed - held + exc.start, fed - held + exc.end
            what = (f"byte 0x{exc.object[exc.start]:02x} in position {start}" if end - start == 1
                    else f"bytes in position {start}-{end - 1}")
            raise FileRejected(f"not UTF-8 text: '{exc.encoding}' codec can't decode {what}: {exc.reason}") from exc
        fed += len(chunk)
        seen = seen or (bool(text) and not text.isspace())  # what text.strip() keeps, without its copy
        if final:
            stream.seek(0)
            return seen


def _text_lines(stream: BinaryIO) -> Iterator[str]:
    """Lines of a UTF-8 stream as contract's CSV reader splits them (at \n, \r\n or \r, kept), BOM dropped."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield from text
    finally:
        with contextlib.suppress(ValueError):  # the stream may be closed already (a file rejected midway)
            text.detach()  # the caller's stream stays open


def _stream_csv_records(stream: BinaryIO) -> Iterator[list[str] | BadRow]:
    """contract.csv_records over a stream's lines: the same records and BadRows, one algorithm."""
    return csv_records(_text_lines(stream))


def _stream_jsonl_lines(stream: BinaryIO) -> Iterator[bytes]:
    """contract._jsonl_lines over a stream, as UTF-8 bytes (the file was checked to be UTF-8): lines end at \n
    only (U+2028 and friends stay inside), a \r before it is dropped, blank lines are not rows."""
    first = True
    for raw in stream:  # a binary stream's lines end at b"\n" only
        if first and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        first = False
        line = raw.removesuffix(b"\n").removesuffix(b"\r")
        if line.strip(b" \t\r"):
            yield line


# ---------------------------------------------------------------- reading chunks

def _csv_chunks(stream: BinaryIO, size: int, max_chars: int = CHUNK_CHARS) -> Iterator[_RawChunk]:
    """CSV records in chunks: well-formed records as columns, broken ones as BadRows (contract's reader)."""
    records = _stream_csv_records(stream)
    header = next(records)
    chunk = _CsvChunk([header.index(c) for c in SUBMISSION_COLUMNS])
    for number, record in enumerate(records, start=1):
        chunk.add(number, record)
        if chunk.count >= size or chunk.chars >= max_chars:
            yield chunk.take()  # the builder keeps nothing of it: the chunk is held by the caller alone
    if chunk.count:
        yield chunk.take()


class _CsvChunk:
    """CSV records gathered into a chunk: every PIECE_CHARS characters the Python text read so far becomes Arrow
    string columns and is let go, so Python holds a piece of the chunk, Arrow the chunk."""

    def __init__(self, where: list[int]) -> None:
        self.where = where
        self._start()

    def _start(self) -> None:
        self.numbers: list[int] = []
        self.rows: list[tuple[int, BadRow]] = []
        self.values: list[list[str]] = [[] for _ in SUBMISSION_COLUMNS]
        self.pieces: list[list[pa.Array]] = [[] for _ in SUBMISSION_COLUMNS]
        self.chars = self.held = 0

    @property
    def count(self) -> int:
        return len(self.numbers) + len(self.rows)

    def add(self, number: int, record: list[str] | BadRow) -> None:
        if isinstance(record, BadRow):
            self.rows.append((number, record))
            chars = len(record.value or "")
        else:
            self.numbers.append(number)
            for values, i in zip(self.values, self.where, strict=True):
                values.append(record[i])
            chars = sum(map(len, record))
        self.chars += chars
        self.held += chars
        if self.held >= PIECE_CHARS:
            self._to_arrow()

    def _to_arrow(self) -> None:
        if self.values[0]:
            for values, pieces in zip(self.values, self.pieces, strict=True):
                pieces.append(pa.array(values, pa.string()))
            self.values = [[] for _ in SUBMISSION_COLUMNS]
        self.held = 0

    def take(self) -> _RawChunk:
        """The chunk read so far (its good records as a table of pieces); the builder starts a new one."""
        self._to_arrow()
        table = pa.table([pa.chunked_array(pieces, pa.string()) for pieces in self.pieces], schema=_STRING_SCHEMA)
        chunk = _RawChunk(self.numbers, table, self.rows)
        self._start()
        return chunk


def _jsonl_chunks(stream: BinaryIO, size: int, max_chars: int = CHUNK_CHARS) -> Iterator[_RawChunk]:
    """JSONL lines in chunks, parsed by Arrow when it reads them exactly as json.loads would, else line by line.

    Arrow is held to the six known keys, each a string or null, each once per object, one object per
    line: any other line (a number, an extra or doubled key, broken JSON) makes Arrow fail, and the
    chunk is read line by line (contract._json_row), so its rows get the per-row reader's values. A chunk's
    lines are held once, as the bytes Arrow parses (about `max_chars` bytes), not also as Python text.
    """
    chunk = _JsonlChunk()
    for line in _stream_jsonl_lines(stream):
        chunk.add(line)
        if chunk.count >= size or len(chunk.payload) >= max_chars:
            yield chunk.take()
    if chunk.count:
        yield chunk.take()


class _JsonlChunk:
    """JSONL lines gathered as one payload of UTF-8 bytes (lines joined by \n), read by Arrow at `take`."""

    def __init__(self) -> None:
        self.payload = bytearray()
        self.count = self.before = 0

    def add(self, line: bytes) -> None:
        if self.count:
            self.payload += b"\n"
        self.payload += line
        self.count += 1

    def take(self) -> _RawChunk:
        payload, count, before = self.payload, self.count, self.before
        self.payload, self.count, self.before = bytearray(), 0, before + count
        return _jsonl_chunk(payload, count, before)


# A line whose first character (after blanks) is not "{": a value that is not an object. Arrow must not see such a
# chunk: pyarrow's JSON reader (26.0.1) crashes the process with a segmentation fault when the first value is `null`,
# and reads a later `null` line as a row of nulls where json.loads (contract._json_row) says "each line must be a
# JSON object". Such chunks are read line by line.
_AN_OBJECT_FIRST = re.compile(rb"[ \t\r]*\{")
_NOT_AN_OBJECT_LATER = re.compile(rb"\n[ \t\r]*[^{ \t\r\n]")


def _jsonl_chunk(payload: bytearray, count: int, before: int) -> _RawChunk:
    import pyarrow.json as pajson

    numbers = list(range(before + 1, before + count + 1))
    if not _AN_OBJECT_FIRST.match(payload) or _NOT_AN_OBJECT_LATER.search(payload):
        return _jsonl_rows(payload, numbers)
    try:
        table = pajson.read_json(pa.BufferReader(pa.py_buffer(payload)), read_options=pajson.ReadOptions(
            use_threads=False, block_size=max(1 << 20, len(payload) + 1)), parse_options=pajson.ParseOptions(
            explicit_schema=_STRING_SCHEMA, unexpected_field_behavior="error", newlines_in_values=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        table = None
    if table is not None and table.num_rows == count:
        return _RawChunk(numbers, table.select(list(SUBMISSION_COLUMNS)).combine_chunks())
    return _jsonl_rows(payload, numbers)


def _jsonl_rows(payload: bytearray, numbers: list[int]) -> _RawChunk:
    """A chunk's lines read one by one (contract._json_row), as the per-row reader reads them."""
    lines = bytes(payload).split(b"\n")
    return _RawChunk(rows=[(n, _json_row(line.decode("utf-8"))) for n, line in zip(numbers, lines, strict=True)])


PARQUET_READ_ROWS = 1024  # rows read from a Parquet file at a time, grouped into chunks by rows and bytes


def _parquet_chunks(data: BinaryIO, size: int, max_chars: int = CHUNK_CHARS) -> Iterator[_RawChunk]:
    """Parquet record batches, read a little at a time and grouped into chunks of at most `size` rows and about
    `max_chars` bytes (Arrow's own size of the decoded values); text columns go column-wise, a chunk with
    another type goes row by row."""
    number, held, rows, nbytes = 0, [], 0, 0
    for read in _parquet_batches(data, min(size, PARQUET_READ_ROWS)):
        per_row = _value_bytes(read) / max(read.num_rows, 1)
        step = max(1, min(read.num_rows, int(max_chars // max(per_row, 1))))  # rows of about max_chars bytes
        for start in range(0, read.num_rows, step):
            batch = read.slice(start, step)
            if held and (rows + batch.num_rows > size or nbytes + per_row * batch.num_rows > max_chars):
                yield _parquet_chunk(_taken(held), number)  # this reader keeps none of it while it is used
                number += rows
                rows, nbytes = 0, 0
            held.append(batch)
            rows += batch.num_rows
            nbytes += per_row * batch.num_rows
    if held:
        yield _parquet_chunk(held, number)


def _taken(items: list) -> list:
    """The items of a list, which is left empty (its owner no longer holds them)."""
    taken = items[:]
    items.clear()
    return taken


def _value_bytes(batch) -> int:
    """The bytes of a record batch's values: text columns by their values' lengths, the others by Arrow's size."""
    total = 0
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_binary(
                column.type):
            total += pc.sum(pc.binary_length(column)).as_py() or 0
        else:
            total += column.nbytes
    return total


def _parquet_chunk(batches: list, before: int) -> _RawChunk:
    table = pa.Table.from_batches(batches)
    numbers = list(range(before + 1, before + table.num_rows + 1))
    if all(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) for t in table.schema.types):
        return _RawChunk(numbers, table.cast(_STRING_SCHEMA))
    return _RawChunk(rows=list(zip(numbers, (row for batch in batches for row in _batch_rows(batch)), strict=True)))


# ---------------------------------------------------------------- checking chunks

class _Checker:
    """Validates raw chunks of one file: column-wise where it can vouch for a row, else row by row."""

    def __init__(self, file_name: str, questions: dict[str, set[str]], rejected_exams: dict[str, str]) -> None:
        self.file_name, self.questions, self.rejected_exams = file_name, questions, rejected_exams
        self.exams = pa.array(sorted(questions), pa.string())
        self.pairs = pa.array(sorted(f"{e}\x00{q}" for e, qs in questions.items() for q in qs), pa.string())

    def __call__(self, chunk: _RawChunk) -> ValidChunk:
        rows = list(chunk.rows)
        good = []
        if chunk.table is not None and chunk.table.num_rows:
            fast, slow = self._fast(chunk.table, pa.array(chunk.numbers, pa.int32()))
            good.append(fast)
            rows += slow
        answers, rejects = [], []
        for number, raw in rows:
            result = (Reject(self.file_name, number, raw.field, raw.value, raw.reason) if isinstance(raw, BadRow)
                      else validate_row(self.file_name, number, raw, self.questions, self.rejected_exams))
            (rejects if isinstance(result, Reject) else answers).append(result)
        if answers:
            good.append(pa.table([pa.array([a.row for a in answers], pa.int32()),
                                  *(pa.array([getattr(a, c) for a in answers], pa.string())
                                    for c in SUBMISSION_COLUMNS[:5]),
                                  pa.array([a.submitted_at for a in answers], STAMP_TYPE)], schema=GOOD_SCHEMA))
        table = pa.concat_tables(good) if good else GOOD_SCHEMA.empty_table()
        rejects.sort(key=lambda r: r.row or 0)
        return ValidChunk(chunk.count, table, rejects)

    def _fast(self, table: pa.Table, numbers: pa.Array) -> tuple[pa.Table, list[tuple[int, dict]]]:
        """The rows every column-wise check vouches for (cleaned), and the others as raw rows."""
        ok = None
        values = {}
        for column in ID_COLUMNS:
            raw = table.column(column)
            value = pc.utf8_trim(raw, characters=PY_SPACE)
            good = pc.and_(pc.and_(pc.is_valid(raw), pc.invert(pc.match_substring(raw, "\x00"))),
                           pc.and_(pc.greater(pc.utf8_length(value), 0),
                                   pc.less_equal(pc.utf8_length(value), MAX_ID_CHARS)))
            values[column] = value
            ok = good if ok is None else pc.and_(ok, good)
        answer = table.column("answer")
        if answer.null_count:  # else the column itself: a chunk's answers are not copied
            answer = pc.fill_null(answer, "")
        ok = pc.and_(ok, pc.and_(pc.invert(pc.match_substring(answer, "\x00")),
                                 pc.less_equal(pc.utf8_length(answer), MAX_ANSWER_CHARS)))
        values["answer"] = answer
        ok = pc.and_(ok, pc.is_in(values["exam_id"], value_set=self.exams))
        pair = pc.binary_join_element_wise(values["exam_id"], values["question_id"], "\x00")
        ok = pc.and_(ok, pc.is_in(pair, value_set=self.pairs))
        stamp, stamp_ok = _fast_stamps(table.column("submitted_at"))
        ok = pc.fill_null(pc.and_(ok, stamp_ok), False)
        good = pa.table([numbers, *(values[c] for c in SUBMISSION_COLUMNS[:5]), stamp], schema=GOOD_SCHEMA)
        if pc.all(ok).as_py():  # every row vouched for: no filtered copy of the chunk
            return good, []
        good = good.filter(ok)
        bad = pc.invert(ok)
        raw_bad = table.filter(bad).to_pylist()
        slow = list(zip(numbers.filter(bad).to_pylist(), raw_bad, strict=True))
        return good, slow


def _fast_stamps(raw) -> tuple[pa.Array, pa.Array]:
    """submitted_at as UTC instants where the fast path vouches for them, and where it does."""
    text = pc.utf8_trim(raw, characters=PY_SPACE)
    ok = pc.fill_null(pc.match_substring_regex(text, FAST_STAMP), False)
    candidates = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    try:
        stamp = pc.cast(candidates, STAMP_TYPE)
    except (pa.ArrowInvalid, ValueError):  # e.g. 30 February: such rows take the per-row path
        return pa.nulls(len(raw), STAMP_TYPE), pa.array([False] * len(raw))
    in_range = pc.and_(pc.greater_equal(stamp, pa.scalar(EARLIEST_SUBMISSION, STAMP_TYPE)),
                       pc.less(stamp, pa.scalar(LATEST_SUBMISSION, STAMP_TYPE)))
    return stamp, pc.fill_null(pc.and_(ok, in_range), False)
