"""Migration 009: the references of answers and submissions are checked set-wise (once per statement)
instead of by per-row foreign-key triggers, and they still hold: an answer whose submission, question or
source file does not exist is refused, naming the key (a submission likewise for its exam, institution
and file), and rows they refer to cannot be deleted or re-keyed."""

from __future__ import annotations

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.intake import ingest

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put

NORTH = get_institution("northfield")
INSERT = ("INSERT INTO answers (institution_id, submission_id, question_id, exam_id, exam_day, answer_text,"
          " answer_sha256, source_file_id, source_row) VALUES ('northfield', %s, %s, 'bio-101', %s, 'x', 'h', %s, 1)")


# A test that asks for `loaded` starts on its own copy of the database the ingest below left (tests/conftest.py,
# fresh_database): the file is ingested once per module, not once per test.
SNAPSHOTS = {"loaded": "loaded_database"}


@pytest.fixture(scope="module")
def loaded_database(databases, _s3_client):
    """Northfield's exam and one submissions file (4 answers) ingested, on a bucket as the s3 fixture leaves it."""
    databases.new()
    stack.empty_bucket(_s3_client)
    put(_s3_client, f"incoming/northfield/{DAY}/exams/bio-101.json", exam_bytes())
    put(_s3_client, f"incoming/northfield/{DAY}/submissions/day.csv", csv_bytes(answers_for("s1", "st1")))
    with db.connect(institution="northfield") as conn:
        report = ingest.ingest_institution(NORTH, conn, _s3_client)
    assert report.rows_loaded == 4
    snapshot = databases.snapshot("loaded")
    yield snapshot
    databases.drop(snapshot)


@pytest.fixture
def loaded(conn):
    """The loaded file's id, in the test's own copy of the database."""
    return conn.execute("SELECT max(file_id) FROM ingested_files").fetchone()[0]


def test_the_per_row_foreign_keys_of_answers_and_submissions_are_gone(conn, loaded):
    keys = conn.execute("SELECT count(*) FROM pg_constraint WHERE conrelid IN ('answers'::regclass, "
                        "'submissions'::regclass) AND contype = 'f'").fetchone()[0]
    assert keys == 0


@pytest.mark.parametrize(("submission", "question", "file_shift", "named"), [
    ("nobody", "q1", 0, "(northfield, nobody) is not present in table \"submissions\""),
    ("s1", "q99", 0, "(northfield, bio-101, q99) is not present in table \"questions\""),
    ("s1", "q1", 1000, "is not present in table \"ingested_files\""),
])
def test_an_answer_with_a_dangling_reference_is_refused(conn, admin_conn, loaded, submission, question, file_shift,
                                                        named):
    # the owner deletes: the night's login has no DELETE (migration 019)
    admin_conn.execute("DELETE FROM answers WHERE submission_id = 's1' AND question_id = 'q1'")
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(INSERT, (submission, question, DAY, loaded + file_shift))
    assert named in (refused.value.diag.message_detail or "")
    conn.rollback()


def test_one_dangling_row_refuses_the_whole_statement(conn, admin_conn, loaded):
    admin_conn.execute("DELETE FROM answers WHERE question_id = 'q1'")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(INSERT.replace("VALUES ('northfield', %s, %s, 'bio-101', %s, 'x', 'h', %s, 1)",
                                    "SELECT 'northfield', s, 'q1', 'bio-101', %s, 'x', 'h', %s, 1 "
                                    "FROM unnest(ARRAY['s1', 'ghost']) s"), (DAY, loaded))
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 3  # s1/q1 did not load either


SUBMISSION = ("INSERT INTO submissions (institution_id, submission_id, exam_id, student_id, exam_day, submitted_at,"
              " source_file_id) VALUES ('northfield', 's2', %s, 'st2', %s, now(), %s)")


@pytest.mark.parametrize(("exam", "file_shift", "named"), [
    ("chem-999", 0, "(northfield, chem-999) is not present in table \"exams\""),
    ("bio-101", 1000, "is not present in table \"ingested_files\""),
])
def test_a_submission_with_a_dangling_reference_is_refused(conn, loaded, exam, file_shift, named):
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(SUBMISSION, (exam, DAY, loaded + file_shift))
    assert named in (refused.value.diag.message_detail or "")
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1


@pytest.mark.parametrize("statement", [
    "DELETE FROM submissions WHERE submission_id = 's1'",
    "DELETE FROM exams WHERE exam_id = 'bio-101'",
    "UPDATE exams SET exam_id = 'bio-102'",
    "UPDATE answers SET question_id = 'q99' WHERE question_id = 'q1'",
    "UPDATE submissions SET exam_id = 'chem-999'",
    "DELETE FROM questions WHERE question_id = 'q1'",
    "UPDATE submissions SET submission_id = 's1-renamed'",
    "UPDATE questions SET question_id = 'q1-renamed' WHERE question_id = 'q1'",
])
def test_rows_that_answers_refer_to_cannot_go(admin_conn, loaded, statement):
    admin_conn.execute("SELECT set_config('gradeflow.institution', 'northfield', false)")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        admin_conn.execute(statement)
    assert admin_conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 4


def test_rows_no_answer_refers_to_can_go_and_other_updates_pass(admin_conn, loaded):
    admin_conn.execute("SELECT set_config('gradeflow.institution', 'northfield', false)")
    admin_conn.execute("UPDATE submissions SET fifo_seq = 7")  # not a key: no check at all
    admin_conn.execute("DELETE FROM answers WHERE question_id = 'q2'")
    admin_conn.execute("DELETE FROM questions WHERE question_id = 'q2'")
    assert admin_conn.execute("SELECT count(*) FROM questions WHERE question_id = 'q2'").fetchone()[0] == 0


def test_every_reference_is_one_mechanism_under_one_naming_scheme(admin_conn, loaded):
    """Migration 020: 009's references moved onto 010's check; one name per reference, four triggers each."""
    triggers = admin_conn.execute(
        "SELECT c.relname, t.tgname, encode(t.tgargs, 'escape') FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgfoid = 'gradeflow_check_reference'::regproc").fetchall()
    refs: dict[str, set[str]] = {}
    for table, name, args in triggers:
        mode, ref, other, mine, theirs, *_ = args.split("\\000")
        child = table if mode == "child" else other
        cols = mine if mode == "child" else theirs
        assert ref == f"{child}_{cols.replace(',', '_')}_ref" and name.startswith(ref + "_"), (name, args)
        refs.setdefault(ref, set()).add(name.removeprefix(ref + "_"))
    assert all(kinds == {"ins", "upd", "del", "pupd"} for kinds in refs.values()), refs
    expected = {  # 010's (four left after 016), 016's fifteen tenant references, 009's four
        "grades_institution_id_submission_id_question_id_ref",
        "review_queue_institution_id_submission_id_question_id_ref",
        "llm_requests_institution_id_ref", "batch_lines_institution_id_ref",
        "submissions_institution_id_source_file_id_ref", "answers_institution_id_source_file_id_ref",
        "exams_institution_id_source_file_id_ref", "ingested_files_institution_id_duplicate_of_ref",
        "rejected_rows_institution_id_file_id_ref", "reviews_institution_id_file_id_ref",
        "reviews_institution_id_review_id_ref", "review_queue_institution_id_review_item_ref",
        "grades_institution_id_review_id_ref", "grades_institution_id_review_line_id_ref",
        "grades_institution_id_job_id_ref", "llm_requests_institution_id_job_id_ref",
        "batch_lines_institution_id_job_id_ref", "batch_lines_institution_id_custom_id_ref",
        "releases_institution_id_validation_id_ref",
        "answers_institution_id_submission_id_ref", "answers_institution_id_exam_id_question_id_ref",
        "submissions_institution_id_exam_id_ref", "submissions_institution_id_ref"}
    assert expected <= set(refs), sorted(expected - set(refs))
    assert admin_conn.execute("SELECT count(*) FROM pg_proc WHERE proname IN ('gradeflow_answers_refs_check',"
                              " 'gradeflow_submissions_refs_check', 'gradeflow_refs_changed',"
                              " 'gradeflow_answers_referenced', 'gradeflow_answers_key_changed')").fetchone()[0] == 0


def test_a_parent_deleted_while_an_answer_is_written_waits_for_it(conn, admin_conn, loaded):
    """The check locks the answer's question FOR KEY SHARE (as a foreign key does): a concurrent delete of the
    question waits for the answer's transaction and then sees it, so no answer is left without its question."""
    admin_conn.execute("DELETE FROM answers WHERE submission_id = 's1' AND question_id = 'q1'")
    with conn.transaction():
        conn.execute(INSERT, ("s1", "q1", DAY, loaded))  # not committed yet: the owner cannot see it
        admin_conn.execute("SET lock_timeout = '100ms'")  # the lock is held until the commit below
        with pytest.raises(psycopg.errors.LockNotAvailable):
            admin_conn.execute("DELETE FROM questions WHERE question_id = 'q1'")
        admin_conn.execute("RESET lock_timeout")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # committed now: the delete sees it and is refused
        admin_conn.execute("DELETE FROM questions WHERE question_id = 'q1'")
    assert admin_conn.execute("SELECT count(*) FROM answers a WHERE NOT EXISTS (SELECT 1 FROM questions q"
                              " WHERE q.institution_id = a.institution_id AND q.exam_id = a.exam_id"
                              " AND q.question_id = a.question_id)").fetchone()[0] == 0


MANY = ("INSERT INTO answers (institution_id, submission_id, question_id, exam_id, exam_day, answer_text,"
        " answer_sha256, source_file_id, source_row) SELECT 'northfield', s, q, 'bio-101', %s, 'x', 'h', %s, 1"
        " FROM unnest(%s::text[]) s, unnest(ARRAY['q1', 'q2', 'q3', 'q4']) q")


def test_a_statement_naming_each_parent_many_times_is_refused_by_its_one_dangling_key(conn, admin_conn, loaded):
    """Migration 032: a locking reference checks each distinct key of the statement once; many rows naming the same
    parents and one naming none are refused whole, with the same error (code, reference, message, detail)."""
    admin_conn.execute("DELETE FROM answers")
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(MANY, (DAY, loaded, ["s1", "ghost"]))  # four rows name s1, four name no submission
    conn.rollback()
    diag = refused.value.diag
    assert diag.constraint_name == "answers_institution_id_submission_id_ref"
    assert diag.message_primary == ('insert or update on table "answers" violates reference '
                                    '"answers_institution_id_submission_id_ref"')
    assert diag.message_detail == ('Key (institution_id,submission_id)=(northfield, ghost) is not present in table '
                                   '"submissions".')
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
        conn.execute(MANY.replace("unnest(ARRAY['q1', 'q2', 'q3', 'q4'])", "unnest(ARRAY['q1', 'q9', 'q2'])"),
                     (DAY, loaded, ["s1"]))
    conn.rollback()
    assert refused.value.diag.message_detail == ('Key (institution_id,exam_id,question_id)=(northfield, bio-101, q9) '
                                                 'is not present in table "questions".')
    assert admin_conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 0
    conn.execute(MANY, (DAY, loaded, ["s1"]))  # every key present: the four rows load
    assert admin_conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 4


def test_a_parent_named_by_many_rows_is_locked_until_they_commit(conn, admin_conn, loaded):
    """The distinct keys are still locked FOR KEY SHARE: deleting the submission four answers name waits for their
    transaction, then sees them and is refused."""
    admin_conn.execute("DELETE FROM answers")
    with conn.transaction():
        conn.execute(MANY, (DAY, loaded, ["s1"]))
        admin_conn.execute("SET lock_timeout = '100ms'")  # the lock is held until the commit below
        with pytest.raises(psycopg.errors.LockNotAvailable):
            admin_conn.execute("DELETE FROM submissions WHERE submission_id = 's1'")
        admin_conn.execute("RESET lock_timeout")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        admin_conn.execute("DELETE FROM submissions WHERE submission_id = 's1'")
    assert admin_conn.execute("SELECT count(*) FROM answers WHERE submission_id = 's1'").fetchone()[0] == 4
