"""Hypothesis strategies for the ingest fuzz tests: exam definitions and submission files (CSV,
JSONL, Parquet), valid and broken, each with what the file contract says must become of every row.

A generated case knows, for every row, whether it must load (with exactly its values), be a
duplicate of an earlier row of the same file, or be a named reject (and of which field).
"""

from __future__ import annotations

import csv
import io
import json
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import strategies as st

COLUMNS = ("submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at")
ODD = ["\u2028", "\u2029", "\u0085", "\x1c", "\x1e", "\x0b", "\x0c", "\ufeff", '"', "'", ",", ";", "\n", "\r\n",
       "\r", "\t", "=", "+", "-", "@", " ", "é", "😀", "\\", "{", "}", "[", "]"]
TEXT = st.lists(st.one_of(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6),
                          st.sampled_from(ODD)), max_size=6).map("".join)
IDS = st.text(string.ascii_letters + string.digits + "._-", min_size=1, max_size=12)
STUDENT = st.text(st.characters(codec="utf-8", exclude_characters="\x00,", exclude_categories=["Z", "Cc", "Cf"]),
                  min_size=1, max_size=10).filter(lambda s: s == s.strip() and bool(s))

# Row breakages: the column they break (None: the row cannot be read) and the formats they apply to.
ROW_BREAKS = {
    "nul_answer": ("answer", "csv jsonl parquet"),
    "empty_student": ("student_id", "csv jsonl parquet"),
    "long_id": ("submission_id", "csv jsonl parquet"),
    "offset_18": ("submitted_at", "csv jsonl parquet"),
    "year_1": ("submitted_at", "csv jsonl parquet"),
    "year_1999": ("submitted_at", "csv jsonl parquet"),
    "naive_stamp": ("submitted_at", "csv jsonl parquet"),
    "garbage_stamp": ("submitted_at", "csv jsonl parquet"),
    "unknown_exam": ("exam_id", "csv jsonl parquet"),
    "unknown_question": ("question_id", "csv jsonl parquet"),
    "short_row": (None, "csv"),
    "long_row": (None, "csv"),
    "stray_quote": (None, "csv"),
    "surrogate_answer": ("answer", "jsonl"),
    "object_answer": ("answer", "jsonl"),
    "list_answer": ("answer", "jsonl"),
    "nan_answer": ("answer", "jsonl"),
    "object_student": ("student_id", "jsonl"),
    "not_json": (None, "jsonl"),
    "array_line": (None, "jsonl"),
}
EXAM_BREAKS = ["nan_points", "inf_points", "huge_points", "nan_tolerance", "nan_key", "huge_key", "nul_title",
               "surrogate_option", "nested_title", "mismatched_name", "not_json", "string_points"]


@dataclass
class Row:
    """One generated answer row and its fate under the contract."""

    values: dict
    brk: str | None = None  # a key of ROW_BREAKS, "dup" (the same as an earlier row) or None
    number: int = 0

    @property
    def stamp(self) -> datetime | None:
        return self.values.get("_instant")


@dataclass
class Case:
    """An exam file and one submissions file, as bytes, with the expected fate of every row."""

    exam_name: str
    exam_bytes: bytes
    exam_ok: bool
    exam_id: str
    questions: list[str]
    fmt: str
    sub_name: str
    sub_bytes: bytes
    rows: list[Row] = field(default_factory=list)
    file_reject: str | None = None  # words the file-level reason must contain, when the file is refused
    resend: bool = False

    def expected_field(self, row: Row) -> str | None:
        """The field named by the reject of a row that must not load (its first bad column in order)."""
        if row.brk and row.brk != "dup":
            column = ROW_BREAKS[row.brk][0]
            if column is None or column not in ("exam_id", "question_id") or self.exam_ok:
                return column
        return "exam_id" if not self.exam_ok else None

    def must_load(self, row: Row) -> bool:
        return self.exam_ok and row.brk is None


@st.composite
def exams(draw) -> tuple[str, bytes, bool, str, list[str]]:
    """(file name, bytes, valid?, exam_id, question ids) of an exam definition, valid or broken."""
    exam_id = draw(IDS)
    qtypes = draw(st.lists(st.sampled_from(["multiple_choice", "true_false", "numeric", "short_answer", "essay"]),
                           min_size=1, max_size=3))
    questions = []
    for i, qtype in enumerate(qtypes, start=1):
        q = {"question_id": f"q{i}", "type": qtype, "max_points": draw(st.sampled_from([1, 2, 2.5, 10])),
             "prompt": draw(TEXT)}
        if qtype == "multiple_choice":
            q.update(options=["A", "B", "C"], answer_key=draw(st.sampled_from(["B", ["A", "C"]])))
        elif qtype == "true_false":
            q["answer_key"] = draw(st.booleans())
        elif qtype == "numeric":
            q.update(answer_key=draw(st.floats(-1e6, 1e6)), tolerance=draw(st.sampled_from([0, 0.5, 1])))
        else:
            q.update(rubric=draw(TEXT.filter(str.strip)) or "r", reference_answer="ref")
        questions.append(q)
    doc = {"exam_id": exam_id, "title": draw(TEXT), "questions": questions}
    brk = draw(st.sampled_from([None] * 18 + EXAM_BREAKS))
    name = f"{exam_id}.json"
    first = questions[0]
    if brk in ("nan_points", "inf_points", "huge_points", "string_points"):
        first["max_points"] = {"nan_points": float("nan"), "inf_points": float("inf"), "huge_points": 10 ** 30,
                               "string_points": "3"}[brk]
    elif brk in ("nan_tolerance", "nan_key", "huge_key"):
        first.update(type="numeric", answer_key=46, tolerance=0)
        first.pop("options", None)
        first[{"nan_tolerance": "tolerance", "nan_key": "answer_key", "huge_key": "answer_key"}[brk]] = \
            10 ** 20 if brk == "huge_key" else float("nan")
    elif brk == "nul_title":
        doc["title"] = "Bio\x00logy"
    elif brk == "surrogate_option":
        first.update(type="multiple_choice", options=["A", "B", "\ud800"], answer_key="B")
    elif brk == "nested_title":
        doc["title"] = {"en": "Biology"}
    elif brk == "mismatched_name":
        name = f"other-{exam_id}.json"
    data = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass") \
        if brk != "surrogate_option" else json.dumps(doc).encode()
    if brk == "not_json":
        data = data[: len(data) // 2]
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    return name, data, brk is None, exam_id, [q["question_id"] for q in questions]


def _stamp(draw) -> tuple[str, datetime]:
    local = draw(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31)))
    minutes = draw(st.integers(-(15 * 60 + 59), 15 * 60 + 59))
    aware = local.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    text = aware.isoformat() if draw(st.booleans()) else aware.isoformat(sep=" ")
    return text, aware.astimezone(UTC)


@st.composite
def cases(draw, formats=("csv", "jsonl", "parquet")) -> Case:
    """An exam and a submissions file in one format, with rows valid, duplicated and broken."""
    exam_name, exam_data, exam_ok, exam_id, qids = draw(exams())
    fmt = draw(st.sampled_from(formats))
    breaks = [None] * 8 + ["dup"] * 2 + [k for k, (_, fmts) in ROW_BREAKS.items() if fmt in fmts.split()]
    rows: list[Row] = []
    for i in range(draw(st.integers(1, 8))):
        brk = draw(st.sampled_from(breaks))
        good = [r for r in rows if r.brk is None]
        if brk == "dup" and good:
            rows.append(Row(dict(draw(st.sampled_from(good)).values), "dup"))
            continue
        brk = None if brk == "dup" else brk
        text, instant = _stamp(draw)
        values = {"submission_id": f"s{i}", "student_id": draw(STUDENT), "exam_id": exam_id,
                  "question_id": draw(st.sampled_from(qids)), "answer": draw(TEXT), "submitted_at": text,
                  "_instant": instant}
        _break(values, brk)
        rows.append(Row(values, brk))
    if fmt == "csv" and any(r.brk == "stray_quote" for r in rows):
        for r in rows:  # a field opening with a quote right before a delimiter would close a stray quote
            for col in ("answer", "student_id"):
                if isinstance(r.values[col], str) and r.values[col][:1] in (",", "\n", "\r"):
                    r.values[col] = "x" + r.values[col]
    for number, row in enumerate(rows, start=1):
        row.number = number
    case = Case(exam_name, exam_data, exam_ok, exam_id, qids, fmt, f"day.{fmt}", b"", rows,
                resend=draw(st.booleans()))
    file_break = draw(st.sampled_from([None] * 10 + ["duplicate_header", "empty"]))
    if fmt == "jsonl" and file_break == "duplicate_header":
        file_break = None  # JSON Lines have no header (a doubled key in a line is a unit test)
    case.sub_bytes = {"csv": _csv, "jsonl": _jsonl, "parquet": _parquet}[fmt](draw, rows, file_break)
    if file_break:
        case.file_reject = "appears 2 times" if file_break == "duplicate_header" else "the file is empty"
    return case


def _break(values: dict, brk: str | None) -> None:
    if brk is None:
        return
    changes = {
        "nul_answer": {"answer": "B\x00"}, "empty_student": {"student_id": ""}, "long_id": {"submission_id": "s" * 200},
        "offset_18": {"submitted_at": "2026-11-23T10:00:00+18:00"},
        "year_1": {"submitted_at": "0001-01-01T00:00:00+14:00"}, "year_1999": {"submitted_at": "1999-12-31T23:00Z"},
        "naive_stamp": {"submitted_at": "2026-11-23T10:00:00"}, "garbage_stamp": {"submitted_at": "soon"},
        "unknown_exam": {"exam_id": "no such exam"}, "unknown_question": {"question_id": "q99"},
        "surrogate_answer": {"answer": "bad \ud800"}, "object_answer": {"answer": {"choice": "B"}},
        "list_answer": {"answer": ["B"]}, "object_student": {"student_id": {"id": 7}}, "stray_quote": {"answer": "B"},
        "short_row": {"answer": "B"}, "long_row": {"answer": "B"},
    }
    values.update(changes.get(brk, {}))


def _csv(draw, rows: list[Row], file_break: str | None) -> bytes:
    if file_break == "empty":
        return b""
    buf = io.StringIO(newline="")
    # csv.writer quotes a field holding a bare \r only when \r is in its line terminator: with "\n"
    # it would write an invalid CSV (a bare CR in an unquoted field), so that variant quotes every field.
    end = draw(st.sampled_from(["\n", "\r\n"]))
    writer = csv.writer(buf, lineterminator=end, quoting=csv.QUOTE_ALL if end == "\n" else csv.QUOTE_MINIMAL)
    header = list(COLUMNS) + (["answer"] if file_break == "duplicate_header" else [])
    writer.writerow(header)
    for row in rows:
        fields = [row.values[c] for c in COLUMNS] + (["B"] if file_break == "duplicate_header" else [])
        if row.brk == "short_row":
            fields = fields[:-1]
        elif row.brk == "long_row":
            fields = [*fields, "extra"]
        if row.brk == "stray_quote":
            line = io.StringIO(newline="")
            csv.writer(line, lineterminator="").writerow(fields)
            text = line.getvalue()
            head, _, tail = text.rpartition(",")  # open a quote at the answer and never close it
            start = head.rfind(",")
            buf.write(head[: start + 1] + '"' + head[start + 1:] + "," + tail + end)
        else:
            writer.writerow(fields)
    data = buf.getvalue().encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if draw(st.booleans()) else data


def _jsonl(draw, rows: list[Row], file_break: str | None) -> bytes:
    if file_break == "empty":
        return b""
    lines = []
    for row in rows:
        obj = {c: row.values[c] for c in COLUMNS}
        if row.brk == "not_json":
            lines.append('{"submission_id": "broken')
        elif row.brk == "array_line":
            lines.append(json.dumps(list(obj.values())))
        elif row.brk == "nan_answer":
            lines.append(json.dumps(obj).replace('"answer": "', '"answer": NaN, "x": "', 1))
        else:
            lines.append(json.dumps(obj, ensure_ascii=row.brk == "surrogate_answer" or draw(st.booleans())))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    data = (end.join(lines) + (end if draw(st.booleans()) else "")).encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if draw(st.booleans()) else data


def _parquet(draw, rows: list[Row], file_break: str | None) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if file_break == "empty":
        return b""
    columns = {c: [row.values[c] for row in rows] for c in COLUMNS}
    kind = draw(st.sampled_from(["string", "large_string", "binary"]))
    arrays = [pa.array(columns[c], type=pa.string()) for c in COLUMNS]
    answers = columns["answer"]
    arrays[4] = pa.array([a.encode() for a in answers], type=pa.binary()) if kind == "binary" else \
        pa.array(answers, type=pa.large_string() if kind == "large_string" else pa.string())
    names = list(COLUMNS)
    if file_break == "duplicate_header":
        arrays.append(arrays[4])
        names.append("answer")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), buf)
    return buf.getvalue()
