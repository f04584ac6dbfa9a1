"""References of the night's bulk tables are checked once per statement (migration 010), with a foreign
key's meaning: a dangling reference is refused, and so is removing (or re-keying) a referenced row.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put

NORTH = get_institution("northfield")
GRADE = ("INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, "
         "job_id) VALUES ('northfield', %s, %s, %s, 0, 1, 'rule', %s)")


# A test that asks for `graded_day` starts on its own copy of the database the day below left (tests/conftest.py,
# fresh_database): the day is ingested and graded once per module, not once per test.
SNAPSHOTS = {"graded_day": "graded_day_database"}


@pytest.fixture(scope="module")
def graded_day_database(databases, _s3_client):
    """Three submissions ingested, ordered and graded by rule, on a bucket as the s3 fixture leaves it."""
    databases.new()
    stack.empty_bucket(_s3_client)
    rows = [row for n in range(3) for row in answers_for(f"s{n}", f"st{n}")]
    put(_s3_client, f"incoming/{NORTH.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(_s3_client, f"incoming/{NORTH.s3_prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
    with db.connect(institution="northfield") as conn:
        ingest.ingest_institution(NORTH, conn, _s3_client)
        prepare.order_submissions(conn, NORTH, date.fromisoformat(DAY))
        assert prepare.grade_by_rule(conn, NORTH, date.fromisoformat(DAY)) > 0
    snapshot = databases.snapshot("graded_day")
    yield snapshot
    databases.drop(snapshot)


@pytest.fixture
def graded_day(conn):
    """Northfield's connection on the test's own copy of the graded day."""
    return conn


def test_the_bulk_tables_have_no_per_row_foreign_keys_left(admin_conn, conn):
    per_row = admin_conn.execute(
        "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
        "AND (conrelid, confrelid) IN (('grades'::regclass, 'answers'::regclass), "
        "('grades'::regclass, 'batch_jobs'::regclass), ('review_queue'::regclass, 'answers'::regclass), "
        "('batch_lines'::regclass, 'llm_requests'::regclass), ('llm_requests'::regclass, 'batch_jobs'::regclass))"
    ).fetchall()
    assert per_row == []


def test_a_grade_of_an_answer_that_does_not_exist_is_refused(graded_day):
    conn = graded_day
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match='reference') as caught, conn.transaction():
        conn.execute(  # one dangling row among good ones: the whole statement is refused
            "INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, "
            "is_current) VALUES ('northfield', 's0', 'q1', %(day)s, 0, 1, 'rule', false), "
            "('northfield', 's404', 'q1', %(day)s, 0, 1, 'rule', false), "
            "('northfield', 's1', 'q1', %(day)s, 0, 1, 'rule', false)", {"day": DAY})
    assert "s404" in caught.value.diag.message_detail and "answers" in caught.value.diag.message_detail
    with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
        conn.execute(GRADE, ("s0", "q4", DAY, 424242))  # a batch job that does not exist (q4: no grade yet)
    with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
        conn.execute("INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason) "
                     "VALUES ('northfield', 's404', 'q1', %s, 'manual')", (DAY,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():  # re-pointing a grade
        conn.execute("UPDATE grades SET submission_id = 's404' WHERE submission_id = 's0' AND question_id = 'q1'")
    assert conn.execute("SELECT count(*) FROM grades WHERE submission_id = 's404'").fetchone()[0] == 0


def test_a_referenced_row_cannot_be_removed_or_rekeyed(graded_day, admin_conn):
    conn = graded_day
    graded = conn.execute("SELECT submission_id, question_id FROM grades LIMIT 1").fetchone()
    # Deletes as the owner: the night's login has no DELETE on tenant tables (migration 019).
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="still referenced"), admin_conn.transaction():
        admin_conn.execute("DELETE FROM answers WHERE submission_id = %s AND question_id = %s", graded)
    with conn.transaction():  # a submission with no answers, so only the grade's reference stands in the way
        conn.execute("INSERT INTO submissions (institution_id, submission_id, exam_id, student_id, exam_day, "
                     "submitted_at, source_file_id) SELECT institution_id, 'moved', exam_id, 'st-moved', exam_day, "
                     "submitted_at, source_file_id FROM submissions WHERE submission_id = %s", graded[:1])
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="still referenced"), conn.transaction():
        conn.execute("UPDATE answers SET submission_id = 'moved' WHERE submission_id = %s AND question_id = %s",
                     graded)
    # An answer nothing refers to may go (the check is on references, not a ban on deletes).
    with admin_conn.transaction():
        admin_conn.execute("DELETE FROM grades WHERE submission_id = %s AND question_id = %s", graded)
        assert admin_conn.execute("DELETE FROM answers WHERE submission_id = %s AND question_id = %s",
                                  graded).rowcount == 1


def test_a_ledger_line_needs_its_request_and_job(graded_day):
    conn = graded_day
    with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
        conn.execute("INSERT INTO batch_lines (institution_id, job_id, custom_id, exam_day, attempt, est_input_tokens, "
                     "est_output_tokens) VALUES ('northfield', 1, 'gf1-nope', %s, 1, 1, 1)", (DAY,))


def test_a_release_row_needs_its_release_of_its_own_institution(graded_day, admin_conn):
    """Migration 021: release_results -> releases is checked once per statement (a release of a big day
    wrote one row-level foreign-key check per answer), with the foreign key's meaning, tenant-bound."""
    from gradeflow.release import publish

    conn, day = graded_day, date.fromisoformat(DAY)
    per_row = admin_conn.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                                 "AND conrelid = 'release_results'::regclass").fetchone()[0]
    assert per_row == 0
    gate = publish.validate(conn, NORTH, day)
    assert gate.success, gate.failures
    released = publish.release(conn, NORTH, day, gate.validation_id)
    assert released["row_count"] == conn.execute("SELECT count(*) FROM answers").fetchone()[0] > 0
    copy_one = ("INSERT INTO release_results (release_id, institution_id, exam_day, version, exam_id, submission_id, "
                "student_id, question_id, status, score, max_points, grader) SELECT %s, institution_id, exam_day, "
                "version, exam_id, submission_id || '-x', student_id, question_id, status, score, max_points, grader "
                "FROM release_results WHERE release_id = %s LIMIT 1")
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="release_id") as caught, admin_conn.transaction():
        admin_conn.execute(copy_one, (424242, released["release_id"]))  # no such release
    assert "424242" in caught.value.diag.message_detail
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="still referenced"), admin_conn.transaction():
        admin_conn.execute("DELETE FROM releases WHERE release_id = %s", (released["release_id"],))
    with pytest.raises(psycopg.errors.ForeignKeyViolation), admin_conn.transaction():
        # a row of another institution may not point at this institution's release
        admin_conn.execute(copy_one.replace("SELECT %s, institution_id,", "SELECT %s, 'lakeshore',"),
                           (released["release_id"], released["release_id"]))
