"""ingest._FileKeys: whether a file's staged rows can clash among themselves, decided from the rows as they are staged.
When it says no (and no submission was loaded before) the clash statement is not run, so a "no" must never be
wrong: a question given twice or a submission given two owners says "may clash", and so does any file staged in more
than one chunk."""

from __future__ import annotations

import pyarrow as pa
import pytest

from gradeflow.intake import ingest


def _chunk(*rows: tuple[str, str, str, str]) -> pa.Table:
    names = ("submission_id", "question_id", "student_id", "exam_id")
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


def _keys(*chunks: pa.Table) -> ingest._FileKeys:
    keys = ingest._FileKeys()
    for chunk in chunks:
        keys.add(chunk)
    return keys


def test_distinct_questions_of_submissions_with_one_owner_each_cannot_clash():
    keys = _keys(_chunk(("s1", "q1", "st1", "e"), ("s1", "q2", "st1", "e"), ("s2", "q1", "st2", "e"),
                        ("s2", "q2", "st2", "e"), ("s3", "q1", "st1", "e")), _chunk())
    assert keys.may_clash is False


@pytest.mark.parametrize("chunks", [
    [_chunk(("s1", "q1", "st1", "e"), ("s1", "q1", "st1", "e"))],  # a twin: the same answer again
    [_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e"), ("s1", "q1", "st1", "e"))],
    [_chunk(("s1", "q1", "st1", "e"), ("s1", "q2", "st9", "e"))],  # another student
    [_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st1", "e"), ("s1", "q2", "st1", "e2"))],  # another exam
    [_chunk(("s1", "q1", "st1", "e")), _chunk(("s2", "q1", "st2", "e"))],  # two chunks: not looked into
])
def test_a_question_given_twice_a_submission_with_two_owners_or_a_second_chunk_may_clash(chunks):
    assert _keys(*chunks).may_clash is True
