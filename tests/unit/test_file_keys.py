"""ingest._FileKeys: whether a file's staged rows can clash among themselves, and each submission's first row, decided
from the rows as they are staged (one chunk at a time). When it says no (and no submission was loaded before) the
clash statement is not run, so a "no" must never be wrong: a question given twice or a submission given two owners
says "may clash", within a chunk or across chunks, and so does a file past KEY_ROWS (nothing kept)."""

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
    assert keys.may_clash is False


def test_a_file_of_several_chunks_that_cannot_clash_is_known_to(monkeypatch):
    """A submission continued in the next chunk (other questions, the same owner) is no clash."""
    keys = _keys(_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e")),
                 _chunk(("s2", "q2", "st2", "e"), ("s1", "q2", "st1", "e")), _chunk(("s3", "q1", "st3", "e")))
    assert keys.may_clash is False


@pytest.mark.parametrize("chunks", [
    [_chunk(("s1", "q1", "st1", "e"), ("s1", "q1", "st1", "e"))],  # a twin: the same answer again
    [_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e"), ("s1", "q1", "st1", "e"))],
    [_chunk(("s1", "q1", "st1", "e"), ("s1", "q2", "st9", "e"))],  # another student
    [_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st1", "e"), ("s1", "q2", "st1", "e2"))],  # another exam
    [_chunk(("s1", "q1", "st1", "e")), _chunk(("s2", "q1", "st2", "e"), ("s1", "q1", "st1", "e"))],  # across chunks
    [_chunk(("s1", "q1", "st1", "e")), _chunk(("s2", "q1", "st2", "e")), _chunk(("s1", "q2", "st9", "e"))],
    [_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e")), _chunk(("s2", "q2", "st2", "e2"))],
])
def test_a_question_given_twice_or_a_submission_with_two_owners_may_clash_within_or_across_chunks(chunks):
    assert _keys(*chunks).may_clash is True


def test_each_submissions_first_staged_row_is_its_owner_row():
    """What stage_owners.sql's DISTINCT ON (submission_id) ... ORDER BY row_number finds over the whole stage."""
    first, second = _chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e"), ("s1", "q2", "st1", "e")), \
        _chunk(("s3", "q1", "st3", "e"), ("s2", "q2", "st2", "e"), ("s3", "q2", "st3", "e"))
    owners = _keys(second, first).owners  # whatever the order the rows come in: the lowest row number
    rows = sorted(owners.to_pylist(), key=lambda r: r["row_number"])
    staged = pa.concat_tables([first, second]).to_pylist()
    assert rows == [{k: staged[i][k] for k in ("row_number", "submission_id", "student_id", "exam_id", "submitted_at")}
                    for i in (0, 1, 3)]


def test_past_key_rows_nothing_is_kept_and_the_file_may_clash(monkeypatch):
    monkeypatch.setattr(ingest, "KEY_ROWS", 3)
    keys = _keys(_chunk(("s1", "q1", "st1", "e"), ("s2", "q1", "st2", "e")), _chunk(("s3", "q1", "st3", "e"),
                                                                                   ("s4", "q1", "st4", "e")))
    assert (keys.may_clash, keys.owners, keys.pairs) == (True, None, None)


def test_a_file_with_nothing_staged_has_no_owners_and_cannot_clash():
    keys = _keys(_chunk())
    assert (keys.may_clash, keys.owners.num_rows) == (False, 0)
