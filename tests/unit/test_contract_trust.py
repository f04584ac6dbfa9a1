"""The file contract's trust rules (issue 5): every outside value is checked before the database,
and a bad one is a named reject of its row or of its exam file, never a lost or changed row."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradeflow.core.text import spreadsheet_safe as report_cell
from gradeflow.intake.contract import FileRejected, parse_exam, validate_submissions

QUESTIONS = {"bio": {"q1", "q2"}}
HEADER = "submission_id,student_id,exam_id,question_id,answer,submitted_at\n"
STAMP = "2026-11-23T10:00:00+01:00"


def _line(**overrides) -> dict:
    row = {"submission_id": "s1", "student_id": "a", "exam_id": "bio", "question_id": "q1", "answer": "B",
           "submitted_at": STAMP}
    row.update(overrides)
    return row


def _jsonl(*rows: dict, ensure_ascii: bool = True) -> bytes:
    return "\n".join(json.dumps(r, ensure_ascii=ensure_ascii) for r in rows).encode()


def _parquet(columns: dict) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def test_unterminated_quote_names_its_row_and_keeps_the_rows_around_it():
    data = (HEADER + f"s1,a,bio,q1,B,{STAMP}\n" + f's2,b,bio,q1,"B,{STAMP}\n'
            + f"s3,c,bio,q2,x,{STAMP}\n" + f"s4,d,bio,q2,y,{STAMP}\n").encode()
    good, rejects = validate_submissions("day.csv", data, QUESTIONS)
    assert [g.submission_id for g in good] == ["s1", "s3", "s4"]
    assert [g.answer for g in good] == ["B", "x", "y"]  # nothing swallowed into one field
    [reject] = rejects
    assert reject.row == 2 and "line 3" in reject.reason and "never closed" in reject.reason
    assert reject.value.startswith('s2,b,bio,q1,"B')


def test_unterminated_quote_in_the_last_row_costs_only_that_row():
    data = (HEADER + f"s1,a,bio,q1,B,{STAMP}\n" + 's2,b,bio,q1,"never closed\n').encode()
    good, rejects = validate_submissions("day.csv", data, QUESTIONS)
    assert [g.submission_id for g in good] == ["s1"] and [(r.row, "never closed" in r.reason) for r in rejects] == [
        (2, True)]


def test_duplicate_header_rejects_the_file_naming_the_column():
    data = ("submission_id,student_id,exam_id,question_id,answer,submitted_at,answer\n"
            f"s1,a,bio,q1,A,{STAMP},B\n").encode()
    with pytest.raises(FileRejected, match=r"column 'answer' appears 2 times .*columns 5, 7"):
        validate_submissions("day.csv", data, QUESTIONS)


def test_duplicate_key_in_a_json_line_rejects_that_line():
    text = '{"submission_id": "s1", "student_id": "a", "exam_id": "bio", "question_id": "q1", ' \
           f'"answer": "A", "answer": "B", "submitted_at": "{STAMP}"}}'
    good, rejects = validate_submissions("x.jsonl", text.encode() + b"\n" + _jsonl(_line(submission_id="s2")),
                                         QUESTIONS)
    assert [g.submission_id for g in good] == ["s2"] and rejects[0].field == "answer" and "more than once" in \
        rejects[0].reason


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\x1c", "\x1d", "\x1e", "\x0b", "\x0c"])
def test_jsonl_splits_only_on_newline(separator):
    answer = f"first{separator}second"
    data = _jsonl(_line(answer=answer), _line(submission_id="s2"), ensure_ascii=False)
    good, rejects = validate_submissions("x.jsonl", data, QUESTIONS)
    assert rejects == [] and [g.answer for g in good] == [answer, "B"]


def test_jsonl_crlf_and_bom_cost_no_row():
    data = b"\xef\xbb\xbf" + _jsonl(_line(), _line(submission_id="s2")).replace(b"\n", b"\r\n")
    good, rejects = validate_submissions("x.jsonl", data, QUESTIONS)
    assert rejects == [] and [g.submission_id for g in good] == ["s1", "s2"]


def test_exam_file_with_a_bom_is_accepted():
    doc = {"exam_id": "bio", "questions": [{"question_id": "q1", "type": "true_false", "max_points": 1,
                                            "answer_key": True}]}
    exam, rejects = parse_exam("bio.json", b"\xef\xbb\xbf" + json.dumps(doc).encode())
    assert rejects == [] and exam.exam_id == "bio"


@pytest.mark.parametrize(("value", "kind"), [
    ({"choice": "B"}, "an object"), (["B"], "a list"), (True, None)])
def test_jsonl_nested_values_are_named_rejects_not_reprs(value, kind):
    good, rejects = validate_submissions("x.jsonl", _jsonl(_line(answer=value), _line(submission_id="s2")),
                                         QUESTIONS)
    if kind is None:  # a boolean answer is read as its JSON text
        assert rejects == [] and good[0].answer == "true"
        return
    assert [g.submission_id for g in good] == ["s2"]
    [reject] = rejects
    assert (reject.row, reject.field, reject.reason) == (1, "answer", f"must be text, got {kind}")
    assert reject.value == json.dumps(value)


def test_jsonl_numbers_load_as_written_and_nan_is_refused():
    text = '{"submission_id": 17, "student_id": "a", "exam_id": "bio", "question_id": "q1", ' \
           f'"answer": 1.50, "submitted_at": "{STAMP}"}}\n' \
           '{"submission_id": "s2", "student_id": "a", "exam_id": "bio", "question_id": "q1", ' \
           f'"answer": NaN, "submitted_at": "{STAMP}"}}'
    good, rejects = validate_submissions("x.jsonl", text.encode(), QUESTIONS)
    assert [(g.submission_id, g.answer) for g in good] == [("17", "1.50")]
    assert [(r.row, r.field, r.reason, r.value) for r in rejects] == [
        (2, "answer", "NaN is not a finite number", "NaN")]


def test_object_student_id_says_it_is_not_text():
    good, rejects = validate_submissions("x.jsonl", _jsonl(_line(student_id={"id": 7})), QUESTIONS)
    assert good == [] and (rejects[0].field, rejects[0].reason) == ("student_id", "must be text, got an object")


def test_parquet_lists_are_rejected_and_utf8_bytes_decoded():
    base = {"submission_id": ["s1", "s2"], "student_id": ["a", "b"], "exam_id": ["bio", "bio"],
            "question_id": ["q1", "q1"], "submitted_at": [STAMP, STAMP]}
    good, rejects = validate_submissions("x.parquet", _parquet({**base, "answer": [["B"], ["C", "D"]]}), QUESTIONS)
    assert good == [] and [(r.row, r.field, r.reason) for r in rejects] == [
        (1, "answer", "must be text, got a list"), (2, "answer", "must be text, got a list")]
    good, rejects = validate_submissions("x.parquet", _parquet({**base, "answer": [b"b1", b"\xff\xfe"]}), QUESTIONS)
    assert [g.answer for g in good] == ["b1"]  # decoded, not "b'b1'"
    assert [(r.row, r.field, r.reason) for r in rejects] == [(2, "answer", "a binary value that is not UTF-8 text")]
    structs = pa.array([{"choice": "B"}, {"choice": "C"}])
    good, rejects = validate_submissions("x.parquet", _parquet({**base, "answer": structs}), QUESTIONS)
    assert good == [] and {r.reason for r in rejects} == {"must be text, got an object"}


def test_parquet_duplicate_column_rejects_the_file():
    table = pa.Table.from_arrays([pa.array(["s1"])] * 7, names=[
        "submission_id", "student_id", "exam_id", "question_id", "answer", "submitted_at", "answer"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with pytest.raises(FileRejected, match="column 'answer' appears 2 times"):
        validate_submissions("x.parquet", buf.getvalue(), QUESTIONS)


@pytest.mark.parametrize(("stamp", "words"), [
    ("2026-11-23T10:00:00+18:00", "UTC offset +18:00 is out of range"),
    ("2026-11-23T10:00:00-16:30", "UTC offset -16:30 is out of range"),
    ("0001-01-01T00:00:00+14:00", "out of range"),
    ("9999-12-31T23:59:59-12:00", "out of range"),
    ("1970-01-01T00:00:00Z", "out of range"),
    ("2026-11-23T10:00:00", "has no UTC offset"),
    ("infinity", "not an ISO 8601 timestamp"),
])
def test_timestamps_postgres_cannot_store_are_row_rejects(stamp, words):
    good, rejects = validate_submissions("x.jsonl", _jsonl(_line(submitted_at=stamp), _line(submission_id="s2")),
                                         QUESTIONS)
    assert [g.submission_id for g in good] == ["s2"]
    assert (rejects[0].field, rejects[0].value) == ("submitted_at", stamp) and words in rejects[0].reason


def test_parquet_timestamps_out_of_python_range_are_row_rejects():
    big = pa.array([253402300800, 1_700_000_000], type=pa.timestamp("s", tz="UTC"))  # year 10000, 2023
    columns = {"submission_id": ["s1", "s2"], "student_id": ["a", "b"], "exam_id": ["bio", "bio"],
               "question_id": ["q1", "q1"], "answer": ["B", "B"], "submitted_at": big}
    good, rejects = validate_submissions("x.parquet", _parquet(columns), QUESTIONS)
    assert [g.submission_id for g in good] == ["s2"] and rejects[0].field == "submitted_at"


def test_misleading_reasons_are_gone():
    with pytest.raises(FileRejected, match=r"^the file is empty \(0 bytes\)$"):
        validate_submissions("x.csv", b"", QUESTIONS)
    with pytest.raises(FileRejected, match="no data"):
        validate_submissions("x.csv", b"\xef\xbb\xbf\n", QUESTIONS)
    good, rejects = validate_submissions("x.csv", (HEADER + "s1,a,bio,q1,B\n").encode(), QUESTIONS)
    assert good == [] and rejects[0].reason.startswith("the row has 5 field(s) where 6 are expected")
    assert rejects[0].field is None
    good, rejects = validate_submissions("x.csv", (HEADER + f"s1,a,bio,q1,B,{STAMP},extra\n").encode(), QUESTIONS)
    assert rejects[0].reason.startswith("the row has 7 field(s) where 6 are expected")
    good, rejects = validate_submissions("x.jsonl", _jsonl(_line(exam_id="chem")), QUESTIONS,
                                         {"chem": "chem.json was rejected: questions[0].max_points: nan is not"})
    assert rejects[0].reason == ("exam 'chem' is not defined: its file chem.json was rejected: "
                                 "questions[0].max_points: nan is not") and rejects[0].waits


def _exam_doc(**question) -> dict:
    q = {"question_id": "q1", "type": "numeric", "max_points": 2, "answer_key": 46, "tolerance": 0.5,
         "prompt": "How many?"}
    q.update(question)
    return {"exam_id": "bio", "title": "Bio", "questions": [q]}


@pytest.mark.parametrize(("question", "top", "field"), [
    ({"max_points": float("nan")}, {}, "questions[0].max_points"),
    ({"max_points": float("inf")}, {}, "questions[0].max_points"),
    ({"max_points": 10 ** 30}, {}, "questions[0].max_points"),
    ({"max_points": "3"}, {}, "questions[0].max_points"),
    ({"tolerance": float("nan")}, {}, "questions[0].tolerance"),
    ({"tolerance": -1}, {}, "questions[0].tolerance"),
    ({"answer_key": float("nan")}, {}, "questions[0].answer_key"),
    ({"answer_key": 1e300}, {}, "questions[0].answer_key"),
    ({"prompt": "bad\x00"}, {}, "questions[0].prompt"),
    ({"prompt": {"text": "x"}}, {}, "questions[0].prompt"),
    ({"type": "multiple_choice", "answer_key": "B", "options": ["A", "\ud800"]}, {}, "questions[0].options[1]"),
    ({"type": "multiple_choice", "answer_key": "B\x00", "options": ["A", "B\x00"]}, {}, "questions[0].answer_key"),
    ({"type": "essay", "rubric": "r", "reference_answer": "ref", "answer_key": float("nan")}, {},
     "questions[0].answer_key"),
    ({}, {"title": "Bio\x00"}, "title"),
    ({}, {"title": "\udcff"}, "title"),
    ({}, {"title": ["Bio"]}, "title"),
    ({}, {"notes": {"deep": float("-inf")}}, "notes.deep"),
])
def test_every_exam_value_is_checked_with_its_field_path(question, top, field):
    doc = _exam_doc(**question)
    doc.update(top)
    exam, rejects = parse_exam("bio.json", json.dumps(doc).encode())
    assert exam is None and field in {r.field for r in rejects}, rejects


def test_huge_integer_or_deep_nesting_is_a_named_reject_not_a_crash():
    doc = json.dumps(_exam_doc()).replace('"answer_key": 46', '"answer_key": ' + "9" * 5000)
    exam, rejects = parse_exam("bio.json", doc.encode())
    assert exam is None and "not a readable JSON document" in rejects[0].reason
    exam, rejects = parse_exam("bio.json", b"[" * 100_000 + b"]" * 100_000)
    assert exam is None and rejects[0].reason


def test_an_exam_file_may_only_define_the_exam_it_is_named_after():
    exam, rejects = parse_exam("chem.json", json.dumps(_exam_doc()).encode())
    assert exam is None and [(r.field, "does not match the file name 'chem.json'" in r.reason) for r in rejects] == [
        ("exam_id", True)]
    exam, rejects = parse_exam("bio.json", json.dumps(_exam_doc()).encode())
    assert rejects == [] and exam.exam_id == "bio"


@pytest.mark.parametrize(("cell", "safe"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1", "'+1"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("B", "B"), (None, None), (3, 3)])
def test_report_cells_that_start_like_a_formula_are_neutralised(cell, safe):
    assert report_cell(cell) == safe


def test_a_stray_quote_closed_by_a_later_rows_quote_costs_no_other_row():
    data = (HEADER + f"s1,a,bio,q1,B,{STAMP}\n" + f's2,b,bio,q1,"B,{STAMP}\n' + f"s3,c,bio,q2,x,{STAMP}\n"
            + f's4,d,bio,q2,"\nmulti",{STAMP}\n' + f's5,e,bio,q2,"a, b",{STAMP}\n').encode()
    good, rejects = validate_submissions("day.csv", data, QUESTIONS)
    assert [(g.submission_id, g.answer) for g in good] == [
        ("s1", "B"), ("s3", "x"), ("s4", "\nmulti"), ("s5", "a, b")]
    assert [(r.row, "stray quote" in r.reason and "line 3 reads as a complete row" in r.reason)
            for r in rejects] == [(2, True)]
