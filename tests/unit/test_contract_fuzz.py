"""Property-based tests of the file contract alone (no database): many generated files, valid and
broken, and arbitrary bytes. Every row is loaded with exactly its values or is a named reject."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradeflow.intake.contract import FileRejected, parse_exam, validate_submissions
from tests.fuzz_files import Case, cases

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(cases())
def test_every_generated_row_is_loaded_as_written_or_a_named_reject(case: Case):
    exam, exam_rejects = parse_exam(case.exam_name, case.exam_bytes)
    assert (exam is not None) == case.exam_ok, exam_rejects
    assert all(r.row is None and r.reason for r in exam_rejects)
    questions = {exam.exam_id: {q["question_id"] for q in exam.questions}} if exam else {}
    try:
        good, rejects = validate_submissions(case.sub_name, case.sub_bytes, questions)
    except FileRejected as exc:
        assert case.file_reject and case.file_reject in str(exc)
        return
    assert case.file_reject is None
    assert len(good) + len(rejects) == len(case.rows)
    by_number = {g.row: g for g in good}
    reject_at = {r.row: r for r in rejects}
    assert len(by_number) == len(good) and len(reject_at) == len(rejects) and not by_number.keys() & reject_at.keys()
    for row in case.rows:
        if case.exam_ok and row.brk in (None, "dup"):
            loaded = by_number[row.number]
            assert loaded.answer == row.values["answer"]
            assert loaded.student_id == row.values["student_id"]
            assert loaded.question_id == row.values["question_id"]
            assert loaded.submitted_at == row.stamp
        else:
            reject = reject_at[row.number]
            assert reject.reason and reject.field == case.expected_field(row), (row, reject)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["x.csv", "x.jsonl", "x.parquet"]),
       st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_arbitrary_bytes_are_rows_or_a_file_reject_never_an_exception(name, data):
    try:
        good, rejects = validate_submissions(name, data, {"bio": {"q1"}})
    except FileRejected as exc:
        assert str(exc)
        return
    assert all(r.reason and r.row for r in rejects)
    assert all(g.submitted_at.utcoffset() is not None for g in good)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children), max_leaves=20).map(
        lambda doc: __import__("json").dumps({"exam_id": "bio", "questions": [doc]}).encode("utf-8", "surrogatepass"))))
def test_arbitrary_exam_documents_are_an_exam_or_named_rejects(data):
    exam, rejects = parse_exam("bio.json", data)
    assert (exam is None) == bool(rejects)
    assert all(r.reason for r in rejects)
