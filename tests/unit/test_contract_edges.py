"""Issue 17, files: a stray quote never glues rows, no resync cap drops good rows, Parquet numbers as exact
decimal text, and the reasons for awkward files say what is wrong."""

from __future__ import annotations

import io
import time

import pyarrow as pa
import pyarrow.parquet as pq

from gradeflow.intake.contract import FileRejected, validate_submissions
from tests.columns_reference import validate_all

QUESTIONS = {"bio": {"q1", "q2"}}
HEADER = "submission_id,student_id,exam_id,question_id,answer,submitted_at\n"
STAMP = "2026-11-23T10:00:00+01:00"


def _both(data: bytes, name: str = "day.csv", size: int = 3):
    reference = validate_submissions(name, data, QUESTIONS)
    columns = validate_all(name, data, QUESTIONS, size=size)
    assert [(g.row, g.submission_id, g.answer) for g in columns[0]] == [
        (g.row, g.submission_id, g.answer) for g in reference[0]]
    assert [(r.row, r.reason) for r in columns[1]] == [(r.row, r.reason) for r in reference[1]]
    return reference


def test_a_stray_quote_closed_by_a_later_rows_quote_never_glues_the_two_rows():
    data = (HEADER + f's1,a,bio,q1,"Hello,{STAMP}\n' + f's2,b,bio,q2,12 inches",{STAMP}\n').encode()
    good, rejects = _both(data)
    # s2 is read back as its own row (a quote inside an unquoted field is a character); s1, whose quote
    # is the doubtful one, is a named reject: neither holds the other's line, and 2 rows = 1 loaded + 1 rejected
    assert [(g.row, g.submission_id, g.answer) for g in good] == [(2, "s2", '12 inches"')]
    [reject] = rejects
    assert reject.row == 1 and "stray quote" in reject.reason and "line 2 of the file" in reject.reason
    assert reject.value.startswith('s1,a,bio,q1,"Hello')


def test_rows_between_a_stray_quote_and_its_closing_quote_are_split_back():
    data = (HEADER + f's1,a,bio,q1,"Hello,{STAMP}\n' + f"s3,c,bio,q1,fine,{STAMP}\n"
            + f's2,b,bio,q2,12 inches",{STAMP}\n' + f"s4,d,bio,q1,B,{STAMP}\n").encode()
    good, rejects = _both(data)
    assert [(g.row, g.submission_id, g.answer) for g in good] == [
        (2, "s3", "fine"), (3, "s2", '12 inches"'), (4, "s4", "B")]
    assert [r.row for r in rejects] == [1]


def test_a_quoted_answer_spanning_lines_still_loads():
    data = (HEADER + f's1,a,bio,q2,"Hello, world\nsecond line, with commas\nthird",{STAMP}\n'
            + f"s2,b,bio,q1,B,{STAMP}\n").encode()
    good, rejects = _both(data)
    assert rejects == [] and [g.answer for g in good] == ["Hello, world\nsecond line, with commas\nthird", "B"]


def test_no_resync_cap_drops_the_good_rows_after_many_broken_quotes():
    bad = "".join(f's{i},a,bio,q1,"never closed {i}\n' for i in range(1_100))
    good_rows = "".join(f"g{i},a,bio,q1,B,{STAMP}\n" for i in range(50))
    started = time.monotonic()
    good, rejects = _both((HEADER + bad + good_rows).encode(), size=500)
    assert len(rejects) == 1_100 and [g.submission_id for g in good] == [f"g{i}" for i in range(50)]
    assert time.monotonic() - started < 20


def _parquet(columns: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def _columns(**overrides) -> dict:
    columns = {"submission_id": ["s1"], "student_id": ["a"], "exam_id": ["bio"], "question_id": ["q1"],
               "answer": ["B"], "submitted_at": [STAMP]}
    columns.update(overrides)
    return columns


def test_parquet_numbers_are_exact_decimal_text_never_exponents():
    data = _parquet(_columns(student_id=pa.array([1e20], pa.float64()), answer=pa.array([1.5e-07], pa.float64())))
    good, rejects = _both(data, "day.parquet")
    assert rejects == [] and [(g.student_id, g.answer) for g in good] == [("100000000000000000000", "0.00000015")]
    assert validate_submissions("day.parquet", data, QUESTIONS)[0][0].student_id == "100000000000000000000"


def test_a_parquet_float_id_that_is_not_a_whole_number_is_refused():
    data = _parquet(_columns(student_id=pa.array([12.5], pa.float64())))
    good, rejects = _both(data, "day.parquet")
    assert good == [] and [(r.field, "whole number" in r.reason) for r in rejects] == [("student_id", True)]


def _file_reason(name: str, data: bytes) -> str:
    """The whole-file reject message, the same both ways (per row and column-wise)."""
    messages = []
    for run in (lambda: validate_submissions(name, data, QUESTIONS), lambda: validate_all(name, data, QUESTIONS)):
        try:
            run()
        except FileRejected as exc:
            messages.append(str(exc))
    assert len(messages) == 2 and messages[0] == messages[1], messages
    return messages[0]


def test_utf16_without_a_byte_order_mark_says_so():
    data = (HEADER + f"s1,a,bio,q1,B,{STAMP}\n").encode("utf-16-le")
    assert "UTF-16" in _file_reason("day.csv", data) and "save it as UTF-8" in _file_reason("day.csv", data)


def test_cr_only_jsonl_says_its_line_ends_are_wrong():
    line = '{"submission_id": "s1", "student_id": "a", "exam_id": "bio", "question_id": "q1", "answer": "B", ' \
           f'"submitted_at": "{STAMP}"}}'
    reason = _file_reason("day.jsonl", f"{line}\r{line}\r".encode())
    assert "carriage return" in reason


def test_parquet_named_csv_says_it_is_parquet():
    data = _parquet(_columns())
    assert "Parquet" in _file_reason("day.csv", data) and ".parquet" in _file_reason("day.csv", data)


def test_an_empty_exam_file_says_empty():
    from gradeflow.intake.contract import parse_exam

    exam, rejects = parse_exam("bio.json", b"")
    assert exam is None and [r.reason for r in rejects] == ["the exam file is empty (0 bytes)"]


def _long_rows(long: str) -> dict[str, bytes]:
    import json

    rows = [{"submission_id": f"s{i}", "student_id": "a", "exam_id": "bio", "question_id": "q2", "answer": long,
             "submitted_at": STAMP} for i in range(100)]
    return {"day.csv": (HEADER + "".join(f"s{i},a,bio,q2,{long},{STAMP}\n" for i in range(100))).encode(),
            "day.jsonl": "\n".join(json.dumps(r) for r in rows).encode(),
            "day.parquet": _parquet({c: [r[c] for r in rows] for c in rows[0]})}


def test_chunks_are_bounded_by_characters_as_well_as_rows():
    from gradeflow.intake.columns import validate_chunks

    for name, data in _long_rows("x" * 10_000).items():
        chunks = list(validate_chunks(name, data, QUESTIONS, size=50_000, max_chars=100_000))
        assert sum(c.rows for c in chunks) == 100 and sum(c.good.num_rows for c in chunks) == 100, name
        assert len(chunks) >= 8 and max(c.rows for c in chunks) <= 12, (name, [c.rows for c in chunks])
