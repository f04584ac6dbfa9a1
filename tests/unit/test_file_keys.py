"""ingest._FileKeys: whether a file's staged rows can clash within a chunk, and each chunk's first row of each
submission, found from the rows as they are staged (one chunk at a time). When it says no for a file of one chunk (and
no submission was loaded before) the clash statement is not run, so a "no" must never be wrong: a question given twice
or a submission given two owners says "may clash"; a file of several chunks is left to the statement across chunks."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from gradeflow.intake import ingest
from gradeflow.intake.columns import GOOD_SCHEMA

_ROW = iter(range(1, 1_000_000))


def _chunk(*rows: tuple[str, str, str, str]) -> pa.Table:
    """Staged rows (GOOD_SCHEMA) of (submission_id, question_id, student_id, exam_id), numbered on from the last."""
    numbers = [next(_ROW) for _ in rows]
    at = datetime(2026, 11, 23, 9, tzinfo=UTC)
    columns = {"row_number": numbers, "submission_id": [r[0] for r in rows], "student_id": [r[2] for r in rows],
               "exam_id": [r[3] for r in rows], "question_id": [r[1] for r in rows],
               "answer": [f"answer {n}" for n in numbers], "submitted_at": [at.replace(second=n % 60) for n in numbers]}
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in GOOD_SCHEMA}, schema=GOOD_SCHEMA)


def _keys(*chunks: pa.Table) -> ingest._FileKeys:
    keys = ingest._FileKeys()
    for chunk in chunks:
        keys.add(chunk)
    return keys


def test_distinct_questions_of_submissions_with_one_owner_each_cannot_clash():
    keys = _keys(_chunk(("s1", "q1", "st1", "e"), ("s1", "q2", "st1", "e"), ("s2", "q1", "st2", "e"),
                        ("s2", "q2", "st2", "e"), ("s3", "q1", "st1", "e")), _chunk())
    assert (keys.within, keys.chunks, keys.may_clash) == (False, 1, False)


@pytest.mark.parametrize("rows", [
    [("s1", "q1", "st1", "e"), ("s1", "q1", "st1", "e")],  # a twin: the same answer again
    [("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e"), ("s1", "q1", "st1", "e")],
    [("s1", "q1", "st1", "e"), ("s1", "q2", "st9", "e")],  # another student
    [("s1", "q1", "st1", "e"), ("s2", "q1", "st1", "e"), ("s1", "q2", "st1", "e2")],  # another exam
])
def test_a_question_given_twice_or_a_submission_with_two_owners_in_a_chunk_may_clash(rows):
    keys = _keys(_chunk(("s0", "q1", "st0", "e")), _chunk(*rows))
    assert keys.within is True and keys.may_clash is True


def test_a_file_of_several_chunks_is_left_to_the_statement_across_chunks():
    """Nothing clashes within either chunk: whether s1 clashes across them is stage_clash_across_chunks.sql's."""
    keys = _keys(_chunk(("s1", "q1", "st1", "e")), _chunk(("s2", "q1", "st2", "e"), ("s1", "q1", "st1", "e")))
    assert (keys.within, keys.chunks, keys.may_clash) == (False, 2, True)


def test_each_chunks_first_row_of_each_submission_is_written_as_copy_text():
    """Per chunk what stage_owners.sql's DISTINCT ON (submission_id) ... ORDER BY row_number then finds over them."""
    first = _chunk(("s2", "q1", "st2", "e"), ("s1", "q1", "st1", "e"), ("s2", "q2", "st2", "e"))
    second = _chunk(("s1", "q2", "st1", "e"), ("s3", "q1", "st3", "e"), ("s3", "q2", "st3", "e"))
    keys = _keys(first, second)
    keys.firsts.seek(0)
    lines = keys.firsts.read().decode().splitlines()
    staged = pa.concat_tables([first, second]).to_pylist()
    expected = [staged[i] for i in (0, 1, 3, 4)]
    assert [line.split(",")[:4] for line in lines] == [
        [f'"{r["row_number"]}"', f'"{r["submission_id"]}"', f'"{r["student_id"]}"', f'"{r["exam_id"]}"']
        for r in expected]
    keys.close()


def test_a_file_with_nothing_staged_has_no_first_rows_and_cannot_clash():
    keys = _keys(_chunk())
    keys.firsts.seek(0)
    assert (keys.may_clash, keys.chunks, keys.firsts.read()) == (False, 0, b"")
