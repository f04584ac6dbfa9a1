"""Prepare's hot paths (issue 18, the prepare group; migration 026): what batch building and rule grading write
is unchanged, each queued request row is written once, a job's file is rendered line by line, the reference of
a queued request to its job keeps its meaning and its error, and rule grading inlines its true/false and number
parsers (migration 028)."""

from __future__ import annotations

import json

import psycopg
import pytest

from gradeflow.core import storage
from gradeflow.grading import batch, prepare
from gradeflow.grading.context import Night

from .test_batch_limits import BIG, D1, NORTH, _load, _q4, _rows


def test_queueing_writes_each_request_row_once_with_its_output_estimate(conn, s3, emulator):
    """Queued, one more attempt and send, its job, and the output tokens the budget charged: one UPDATE of each
    request row (queueing and recording the estimate used to rewrite every row twice, with its four indexes)."""
    _load(conn, s3, NORTH, _rows(12))
    prepare.order_submissions(conn, NORTH, D1)
    prepare.grade_by_rule(conn, NORTH, D1)
    with conn.transaction():  # one transaction around the whole build: its row counters add up (savepoints inside)
        plan = prepare.build_batches(Night(NORTH, D1, conn, s3, settings=BIG))
        updated = conn.execute("SELECT pg_stat_get_xact_tuples_updated('llm_requests'::regclass)").fetchone()[0]
    assert plan.requests_queued == 12 and updated == 12
    rows = conn.execute("SELECT r.status, r.attempt, r.sends, r.est_output_tokens = l.est_output_tokens, "
                        "r.est_input_tokens = l.est_input_tokens, r.job_id = l.job_id FROM llm_requests r "
                        "JOIN batch_lines l USING (institution_id, custom_id)").fetchall()
    assert rows == [("queued", 1, 1, True, True, True)] * 12


def test_a_job_file_is_the_requests_lines_rendered_one_by_one(conn, s3, emulator):
    """The file written is exactly each request's json.dumps(build_request(...)) line, in admission order, and its
    recorded size is the size of the object, even when the file is spooled to disk on its way to S3."""
    _load(conn, s3, NORTH, _rows(5, text="answer {i}: \u00fcber ATP \U0001f600 \"quoted\" \\ and more"))
    question = _q4(conn, NORTH)
    writer = batch.RequestWriter(NORTH.model)
    for text in ("It makes ATP", "\u00fcber \U0001f600 \"q\" \\", ""):
        line = writer.request("gf1-" + "ab" * 20, question, text)
        expected = (json.dumps(batch.build_request("gf1-" + "ab" * 20, NORTH.model, question, text),
                               ensure_ascii=False) + "\n").encode()
        assert line.render() == expected and line.size == len(expected)
        assert line.tokens == batch.prompt_tokens(batch.build_request("x", NORTH.model, question, text)["body"])
    prepare.order_submissions(conn, NORTH, D1)
    prepare.grade_by_rule(conn, NORTH, D1)
    prepare.build_batches(Night(NORTH, D1, conn, s3, settings=BIG))
    key, size = conn.execute("SELECT input_key, input_bytes FROM batch_jobs").fetchone()
    body = storage.read_bytes(s3, key)
    assert len(body) == size
    order = [r[0] for r in conn.execute("SELECT custom_id FROM llm_requests ORDER BY exam_day, first_fifo_seq, "
                                        "custom_id")]
    texts = dict(conn.execute("SELECT r.custom_id, a.answer_text FROM llm_requests r JOIN answers a USING "
                              "(institution_id, exam_day, exam_id, question_id, answer_sha256)").fetchall())
    assert body == b"".join((json.dumps(batch.build_request(cid, NORTH.model, question, texts[cid]),
                                        ensure_ascii=False) + "\n").encode() for cid in order)
    spooled = storage.write_chunks(s3, key + ".copy", [body[:100], body[100:]], in_memory=64)  # on disk past 64 B
    assert spooled == size and storage.read_bytes(s3, key + ".copy") == body


def test_a_queued_request_must_point_at_a_job_of_its_institution(conn, s3, emulator):
    """The static check of migration 026 refuses what 020's generic check refused, with the same error."""
    _load(conn, s3, NORTH, _rows(2))
    prepare.order_submissions(conn, NORTH, D1)
    prepare.grade_by_rule(conn, NORTH, D1)
    prepare.build_batches(Night(NORTH, D1, conn, s3, settings=BIG))
    job_id = conn.execute("SELECT job_id FROM batch_jobs").fetchone()[0]
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught, conn.transaction():
        conn.execute("UPDATE llm_requests SET job_id = 424242")
    diag = caught.value.diag
    assert diag.constraint_name == "llm_requests_institution_id_job_id_ref"
    assert diag.message_primary == ('insert or update on table "llm_requests" violates reference '
                                    '"llm_requests_institution_id_job_id_ref"')
    assert diag.message_detail == ('Key (institution_id,job_id)=(northfield, 424242) is not present in table '
                                   '"batch_jobs".')
    with conn.transaction(force_rollback=True):  # an existing job, or none at all, passes
        assert conn.execute("UPDATE llm_requests SET job_id = NULL").rowcount == 2
        assert conn.execute("UPDATE llm_requests SET job_id = %s", (job_id,)).rowcount == 2
    # The generic path of every other reference gives the same shape of error (grades -> batch_jobs, per row).
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as generic, conn.transaction():
        conn.execute("UPDATE grades SET job_id = 424242 WHERE grade_id = (SELECT min(grade_id) FROM grades)")
    assert generic.value.diag.message_detail == diag.message_detail
    assert generic.value.diag.constraint_name == "grades_institution_id_job_id_ref"


def test_rule_grading_inlines_the_true_false_parser(conn):
    """gradeflow_parse_bool is inlined into the rule score (no SQL function call per answer) and still gives NULL
    for NULL, and the rule score 0 for no answer."""
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN VERBOSE SELECT gradeflow_rule_score_keyed(t.qtype, t.answer, NULL, true, 46, 0, 2) "
        "FROM (VALUES ('true_false', 'yes'), ('numeric', '46')) t(qtype, answer)"))
    assert "gradeflow_parse_bool" not in plan and "lower(btrim(" in plan, plan
    assert conn.execute("SELECT gradeflow_parse_bool(NULL), gradeflow_parse_number(NULL), "
                        "gradeflow_rule_score('numeric', NULL, '46', 0, 2)").fetchone() == (None, None, 0)


def test_rule_grading_reads_numbers_without_a_function_call_per_answer(conn):
    """The rule score reads a numeric answer with the number parser's expression in place, so it is inlined whole
    into grade_by_rule (migration 028: no SQL function call per numeric answer); the parser itself, and the score
    called with constants, give what they gave: NULL for NULL and for what is not a number, 0 for a number too
    small for a double, NULL for one too large (folding a constant must not make the parser fail)."""
    plan = "\n".join(r[0] for r in conn.execute(
        "EXPLAIN VERBOSE SELECT gradeflow_rule_score_keyed(t.qtype, t.answer, NULL, true, 46, 0, 2) "
        "FROM (VALUES ('numeric', '46'), ('true_false', 'yes')) t(qtype, answer)"))
    assert "gradeflow_parse_number" not in plan and "pg_input_is_valid" in plan, plan
    texts = [None, " 46 ", "4.6e1", "x46", "1e-400", "1e400", "1e-99999999", "+.5", ""]
    parsed = conn.execute("SELECT gradeflow_parse_number(t) FROM unnest(%s::text[]) WITH ORDINALITY u(t, n) ORDER BY n",
                          (texts,)).fetchall()
    assert [r[0] for r in parsed] == [None, 46.0, 46.0, None, 0.0, None, 0.0, 0.5, None]
    assert conn.execute("SELECT gradeflow_parse_number('1e-400'), gradeflow_rule_score('numeric', '1e-400', '0', 0, "
                        "2), gradeflow_rule_score('numeric', '46', '46', 0, 2)").fetchone() == (0.0, 2, 2)
