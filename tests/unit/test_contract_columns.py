"""The column-wise contract (gradeflow.intake.columns) against the per-row reference (gradeflow.intake.contract):
for generated files (valid and broken, in the three formats) and arbitrary bytes, at several chunk
sizes, both give the same good rows with the same values and the same rejects with the same messages."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradeflow.intake.columns import PY_SPACE, _utf8_text, validate_chunks
from gradeflow.intake.contract import FileRejected, parse_exam, validate_submissions
from tests.columns_reference import validate_all
from tests.fuzz_files import Case, cases

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUESTIONS = {"bio": {"q1", "q2"}}
STAMP = "2026-11-23T10:00:00+01:00"
COLUMNS = ("submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at")



def _both(name: str, data: bytes, questions: dict, size: int, rejected: dict | None = None):
    """(per-row result, column-wise result), each (good rows, rejects) or the FileRejected message."""
    out = []
    for run in (lambda: validate_submissions(name, data, questions, rejected),
                lambda: validate_all(name, data, questions, rejected, size=size)):
        try:
            good, rejects = run()
        except FileRejected as exc:
            out.append(("file rejected", str(exc)))
            continue
        out.append(([(g.row, g.submission_id, g.student_id, g.exam_id, g.question_id, g.answer,
                      g.submitted_at, g.submitted_at.utcoffset()) for g in good], sorted(rejects, key=lambda r: r.row)))
    return out


@FAST
@given(cases(), st.sampled_from([1, 2, 3, 7, 50_000]))
def test_generated_files_give_the_same_rows_and_rejects_both_ways(case: Case, size: int):
    exam, _ = parse_exam(case.exam_name, case.exam_bytes)
    questions = {exam.exam_id: {q["question_id"] for q in exam.questions}} if exam else {}
    reference, columns = _both(case.sub_name, case.sub_bytes, questions, size)
    assert columns == reference


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["x.csv", "x.jsonl", "x.parquet"]), st.sampled_from([1, 2, 50_000]),
       st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_arbitrary_bytes_give_the_same_outcome_both_ways(name, size, data):
    reference, columns = _both(name, data, {"bio": {"q1"}}, size)
    assert columns == reference


def _line(**values) -> dict:
    return {"submission_id": "s1", "student_id": "st1", "exam_id": "bio", "question_id": "q1", "answer": "B",
            "submitted_at": STAMP, **values}


ODD_VALUES = [
    {"student_id": "  st1 "}, {"student_id": "\u2028st1\x1c"}, {"student_id": ""}, {"student_id": None},
    {"submission_id": "x" * 129}, {"submission_id": " " + "x" * 128 + " "}, {"answer": None}, {"answer": ""},
    {"answer": "a\x00b"}, {"answer": "x" * 20_001}, {"answer": "é" * 20_000}, {"exam_id": "chem"},
    {"question_id": "q9"}, {"submitted_at": "2026-02-30T10:00:00Z"}, {"submitted_at": "2026-11-23 10:00:00+01:00"},
    {"submitted_at": " 2026-11-23T10:00:00.5Z\u3000"}, {"submitted_at": "1999-12-31T23:59:59Z"},
    {"submitted_at": "2100-01-01T00:00:00Z"}, {"submitted_at": "2026-11-23T10:00:00+16:00"},
    {"submitted_at": "2026-11-23T10:00:00+15:59"}, {"submitted_at": "2026-11-23T10:00:00"},
    {"submitted_at": "2026-11-23T10:00:00.1234567+01:00"}, {"submitted_at": "2026-11-23T10:00:00+0100"},
    {"submitted_at": "٢٠٢٦-11-23T10:00:00Z"}, {"submitted_at": "2024-02-29T10:00:00Z"}, {"submitted_at": None},
]


def _files(rows: list[dict]) -> dict[str, bytes]:
    buf = io.StringIO(newline="")
    import csv

    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    writer.writerows([["" if r[c] is None else r[c] for c in COLUMNS] for r in rows])
    parquet = io.BytesIO()
    pq.write_table(pa.table({c: pa.array([r[c] for r in rows], pa.string()) for c in COLUMNS}), parquet)
    return {"x.csv": buf.getvalue().encode(), "x.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
            "x.parquet": parquet.getvalue()}


@pytest.mark.parametrize("size", [1, 4, 50_000])
def test_a_fall_back_row_inside_a_fast_chunk_keeps_its_message(size):
    rows = [_line(**{"submission_id": f"s{i}", **odd}) for i, odd in enumerate(ODD_VALUES)]
    rows.insert(5, _line(submission_id="plain"))
    for name, data in _files(rows).items():
        reference, columns = _both(name, data, QUESTIONS, size, {"chem": "chem.json was rejected: title: required"})
        assert columns == reference, name
        good, rejects = reference
        assert {g[0] for g in good} >= {1, 2, 6}, name  # trimmed ids and the plain row load
        assert len(good) + len(rejects) == len(rows)


@pytest.mark.parametrize("name", ["x.csv", "x.jsonl", "x.parquet"])
def test_chunks_split_a_file_and_a_reject_in_the_last_chunk_is_named(name):
    rows = [_line(submission_id=f"s{i // 2}", question_id=f"q{i % 2 + 1}") for i in range(9)]
    rows[8]["submitted_at"] = "23/11/2026 10:00"
    chunks = list(validate_chunks(name, _files(rows)[name], QUESTIONS, size=4))
    assert [c.rows for c in chunks] == [4, 4, 1]
    assert [c.good.num_rows for c in chunks] == [4, 4, 0]
    last = [(r.row, r.field, r.reason) for r in chunks[-1].rejects]
    assert last == [(9, "submitted_at", "not an ISO 8601 timestamp")]
    assert chunks[1].good.column("row_number").to_pylist() == [5, 6, 7, 8]


def test_a_jsonl_chunk_arrow_cannot_read_exactly_is_read_line_by_line():
    lines = [_line(submission_id="s1"), {**_line(submission_id="s2"), "extra": 1}, _line(submission_id="s3")]
    data = ("".join(json.dumps(r) + "\n" for r in lines) + '{"submission_id": "s4", "submission_id": "s5"}\n'
            + '{"answer": 5, "submission_id": "s6", "student_id": "a", "exam_id": "bio", "question_id": "q1", '
            f'"submitted_at": "{STAMP}"}}\n').encode()
    reference, columns = _both("x.jsonl", data, QUESTIONS, 2)
    assert columns == reference
    assert [g[1] for g in reference[0]] == ["s1", "s2", "s3", "s6"]
    assert [(r.row, r.field) for r in reference[1]] == [(4, "submission_id")]


NOT_OBJECTS = ["null", "  null", "null null", "[1]", '"s1"', "1", "true", "{} null"]


def test_a_jsonl_line_that_is_not_an_object_is_refused_as_the_per_row_reader_refuses_it():
    """A line that is not an object, first or after a good line, in chunks of 1, 2 and 50,000 lines: both readers
    give the same rows and rejects. Run in a child process: pyarrow's JSON reader (26.0.1) crashes the process (a
    segmentation fault) when the first value of what it reads is `null` (so the ingest task would die on every sweep
    while the file stays in incoming/), and a crash must fail this test, not the test run."""
    import subprocess

    from gradeflow.intake import columns

    code = """
import json
from tests.unit.test_contract_columns import NOT_OBJECTS, QUESTIONS, _both, _line
good = json.dumps(_line(submission_id="s1")) + "\\n"
for odd in NOT_OBJECTS:
    for where in ("first", "after"):
        data = ((odd + "\\n" + good) if where == "first" else (good + odd + "\\n" + good)).encode()
        for size in (1, 2, 50_000):
            reference, columns = _both("x.jsonl", data, QUESTIONS, size)
            print(odd, where, size, columns == reference, [(r.row, r.reason) for r in reference[1]], len(reference[0]))
"""
    root = Path(columns.__file__).parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "plugins"), str(root)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == len(NOT_OBJECTS) * 6 and all(" True [(" in line for line in lines), done.stdout
    assert "null first 1 True [(1, 'each line must be a JSON object')] 1" in lines
    assert "null after 2 True [(2, 'each line must be a JSON object')] 2" in lines


def test_py_space_is_what_str_strip_removes():
    assert set(PY_SPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40).map(lambda b: b"\xef\xbb\xbf" + b if b and b[0] % 3 == 0 else b),
       st.sampled_from([1, 2, 3, 5, 1 << 20]))
def test_the_utf8_check_names_the_position_a_whole_file_decode_names(data, block):
    try:
        expected = ("text", bool(data.decode("utf-8-sig").strip()))
    except UnicodeDecodeError as exc:
        expected = ("rejected", f"not UTF-8 text: {exc}")
    try:
        got = ("text", _utf8_text(io.BytesIO(data), block))
    except FileRejected as exc:
        got = ("rejected", str(exc))
    assert got == expected


def test_a_file_is_read_as_a_stream_from_a_spooled_file():
    import tempfile

    rows = [_line(submission_id=f"s{i}") for i in range(50)]
    for name, data in _files(rows).items():
        with tempfile.SpooledTemporaryFile(max_size=64) as spool:  # on disk: the reader never gets bytes
            spool.write(data)
            spool.seek(0)
            chunks = list(validate_chunks(name, spool, QUESTIONS, size=7))
        assert sum(c.good.num_rows for c in chunks) == 50 and len(chunks) == 8, name
