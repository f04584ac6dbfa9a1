import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gradeflow.intake.contract import (
    FileRejected,
    answer_sha256,
    parse_exam,
    parse_incoming_key,
    validate_submissions,
)

QUESTIONS = {"bio": {"q1", "q2"}}
HEADER = "submission_id,student_id,exam_id,question_id,answer,submitted_at\n"


def test_incoming_keys():
    p = parse_incoming_key("incoming/north/2026-11-23/submissions/a.csv")
    assert (p.prefix, p.exam_day, p.kind, p.name) == ("north", date(2026, 11, 23), "submissions", "a.csv")
    assert parse_incoming_key("incoming/north/2026-11-23/exams/bio.json").kind == "exam"
    assert parse_incoming_key("incoming/north/2026-11-23/submissions/a.xlsx").kind == "unknown"
    assert parse_incoming_key("incoming/north/2026-13-45/submissions/a.csv") is None
    assert parse_incoming_key("incoming/north/a.csv") is None


def test_identical_answers_merge_on_normalised_text():
    assert answer_sha256("  The Mitochondria\nmakes ATP ") == answer_sha256("the mitochondria makes atp")
    assert answer_sha256("ATP") != answer_sha256("ADP")


def _exam(**overrides):
    doc = {"exam_id": "bio", "title": "Bio", "questions": [
        {"question_id": "q1", "type": "multiple_choice", "max_points": 1, "options": ["A", "B"], "answer_key": "B"},
        {"question_id": "q2", "type": "short_answer", "max_points": 3, "rubric": "r", "reference_answer": "ref"},
    ]}
    doc.update(overrides)
    return json.dumps(doc).encode()


def test_exam_ok():
    exam, rejects = parse_exam("bio.json", _exam())
    assert rejects == [] and exam.exam_id == "bio" and [q["qtype"] for q in exam.questions] == [
        "multiple_choice", "short_answer"]


def test_exam_problems_name_the_field():
    bad = json.loads(_exam())
    bad["questions"][0]["answer_key"] = "Z"
    bad["questions"][1].pop("rubric")
    bad["questions"].append({"question_id": "q1", "type": "numeric", "max_points": 0, "answer_key": "x"})
    exam, rejects = parse_exam("bio.json", json.dumps(bad).encode())
    assert exam is None
    fields = {r.field for r in rejects}
    assert {"questions[0].answer_key", "questions[1].rubric", "questions[2].question_id",
            "questions[2].max_points"} <= fields
    assert all(r.file == "bio.json" for r in rejects)


def test_exam_not_json():
    exam, rejects = parse_exam("bio.json", b"{nope")
    assert exam is None and "not a UTF-8 JSON document" in rejects[0].reason


def test_csv_rows_good_and_bad_named_by_row_and_field():
    data = (HEADER
            + "s1,st1,bio,q1,B,2026-11-23T10:00:00-05:00\n"
            + "s1,,bio,q2,x,2026-11-23T10:00:00-05:00\n"
            + "s2,st2,bio,q9,B,2026-11-23T10:00:00-05:00\n"
            + "s3,st3,chem,q1,B,2026-11-23T10:00:00-05:00\n"
            + "s4,st4,bio,q1,B,yesterday\n"
            + "s5,st5,bio,q1,B,2026-11-23T10:00:00\n"
            + "s6,st6,bio,q2," + "x" * 20_001 + ",2026-11-23T10:00:00+05:30\n"
            + "s7,st7,bio,q2,\"multi, line\nanswer\",2026-11-23T10:00:00Z\n").encode()
    good, rejects = validate_submissions("day.csv", data, QUESTIONS)
    assert [g.submission_id for g in good] == ["s1", "s7"]
    assert good[1].answer == "multi, line\nanswer"
    assert [(r.row, r.field) for r in rejects] == [
        (2, "student_id"), (3, "question_id"), (4, "exam_id"), (5, "submitted_at"), (6, "submitted_at"),
        (7, "answer")]
    assert all(r.file == "day.csv" and r.reason for r in rejects)


def test_csv_missing_column_rejects_file():
    with pytest.raises(FileRejected, match="missing column"):
        validate_submissions("x.csv", b"submission_id,answer\ns1,B\n", QUESTIONS)


def test_jsonl_bad_line_does_not_cost_good_lines():
    lines = [
        json.dumps({"submission_id": "s1", "student_id": "a", "exam_id": "bio", "question_id": "q1",
                    "answer": "B", "submitted_at": "2026-11-23T10:00:00+01:00"}),
        "{broken",
        json.dumps(["not", "an", "object"]),
        json.dumps({"submission_id": "s2", "student_id": "b", "exam_id": "bio", "question_id": "q2",
                    "answer": None, "submitted_at": "2026-11-23T11:00:00+01:00"}),
    ]
    good, rejects = validate_submissions("x.jsonl", "\n".join(lines).encode(), QUESTIONS)
    assert [g.submission_id for g in good] == ["s1", "s2"] and good[1].answer == ""
    assert [r.row for r in rejects] == [2, 3]


def test_parquet(tmp_path):
    table = pa.table({"submission_id": ["s1", "s2"], "student_id": ["a", None], "exam_id": ["bio", "bio"],
                      "question_id": ["q1", "q1"], "answer": ["B", "A"],
                      "submitted_at": ["2026-11-23T10:00:00+05:30", "2026-11-23T10:00:00+05:30"]})
    pq.write_table(table, tmp_path / "x.parquet")
    good, rejects = validate_submissions("x.parquet", (tmp_path / "x.parquet").read_bytes(), QUESTIONS)
    assert len(good) == 1 and rejects[0].row == 2 and rejects[0].field == "student_id"


def test_unreadable_files():
    with pytest.raises(FileRejected, match="Parquet"):
        validate_submissions("x.parquet", b"not parquet", QUESTIONS)
    with pytest.raises(FileRejected, match="UTF-8"):
        validate_submissions("x.csv", HEADER.encode() + b"\xff\xfe,\n", QUESTIONS)


def test_nul_bytes_and_broken_unicode_are_row_rejects_not_crashes():
    lines = [
        json.dumps({"submission_id": "s1", "student_id": "a", "exam_id": "bio", "question_id": "q1",
                    "answer": "B\x00", "submitted_at": "2026-11-23T10:00:00+01:00"}),
        '{"submission_id": "s2", "student_id": "b", "exam_id": "bio", "question_id": "q1", '
        '"answer": "\\ud800", "submitted_at": "2026-11-23T10:00:00+01:00"}',
        json.dumps({"submission_id": "s3", "student_id": "c", "exam_id": "bio", "question_id": "q1",
                    "answer": "B", "submitted_at": "2026-11-23T10:00:00+01:00"}),
    ]
    good, rejects = validate_submissions("x.jsonl", "\n".join(lines).encode(), QUESTIONS)
    assert [g.submission_id for g in good] == ["s3"]
    assert [(r.row, r.field) for r in rejects] == [(1, "answer"), (2, "answer")]


def test_csv_answer_longer_than_the_csv_module_default_is_a_row_reject():
    data = (HEADER + "s1,st1,bio,q2," + "x" * 140_000 + ",2026-11-23T10:00:00Z\n"
            + "s2,st2,bio,q1,B,2026-11-23T10:00:00Z\n").encode()
    good, rejects = validate_submissions("big.csv", data, QUESTIONS)
    assert [g.submission_id for g in good] == ["s2"] and [(r.row, r.field) for r in rejects] == [(1, "answer")]


@pytest.mark.parametrize(("question", "field"), [
    ({"options": 5}, "questions[0].options"),
    ({"answer_key": [["B"]]}, "questions[0].answer_key"),
    ({"prompt": "bad\x00prompt"}, "questions[0].prompt"),
])
def test_exam_shapes_that_used_to_crash_are_named(question, field):
    bad = json.loads(_exam())
    bad["questions"][0].update(question)
    exam, rejects = parse_exam("bio.json", json.dumps(bad).encode())
    assert exam is None and field in {r.field for r in rejects}
