"""Output tokens (issue 14, item 6), on the real stack through the emulator: the cold-start estimate comes from
the question's schema and rubric items, is stored per request and ledger line, then is learned per question
from the nights before; the enqueued-token reservation never depends on it."""

from __future__ import annotations

import copy
import math

from gradeflow.grading import batch, prepare

from .helpers import EXAM, exam_bytes, put, run_night
from .test_batch_limits import BIG, D1, D2, NORTH, _load, _prepare, _q4, _rows

ITEMS = [{"id": "atp", "description": "produces ATP molecules", "points": 2},
         {"id": "resp", "description": "cellular respiration", "points": 1}]


def _requests(conn, day):
    return conn.execute("SELECT exam_id, est_output_tokens FROM llm_requests WHERE exam_day = %s", (day,)).fetchall()


def test_output_estimate_from_the_schema_then_learned_per_question(conn, admin_conn, s3, emulator, openai_client):
    _load(conn, s3, NORTH, _rows(60))
    q4 = _q4(conn, NORTH)
    cold = batch.cold_output_tokens(q4, NORTH.model)
    skeleton = batch.count_tokens('{"score": 2.5, "rationale": "", "confidence": 0.95}')
    assert cold == skeleton + batch.RATIONALE_TOKENS  # the reply's JSON for this schema + the rationale's allowance
    plan = _prepare(conn, s3, NORTH, D1, settings=BIG)
    assert set(_requests(conn, D1)) == {("bio-101", cold)}  # stored per request (was always NULL)
    assert conn.execute("SELECT sum(est_output_tokens), count(*) FROM batch_lines").fetchone() == (60 * cold, 60)
    assert plan.est_output_tokens == 60 * cold and plan.expected_output_per_request == cold
    run_night(conn, s3, openai_client, NORTH, D1, settings=BIG)
    total, lines = conn.execute("SELECT sum(output_tokens), count(*) FROM batch_lines WHERE outcome = 'graded'"
                                ).fetchone()
    assert lines == 60 and 0.5 < total / (60 * cold) < 1.5  # a short reference: shorter rationales than the cold start
    # The reservation under the shared cap holds the job's exact input tokens only: no output estimate in it.
    reserved = admin_conn.execute("SELECT e.tokens, j.est_input_tokens FROM provider_enqueued e JOIN batch_jobs j "
                                  "USING (job_id)").fetchall()
    assert reserved and all(tokens == est_in for tokens, est_in in reserved)

    # Night 2: bio-101's q4 again (its own mean is learned) and a new question with rubric items, whose cold start
    # is corrected by the institution's actual/cold ratio.
    exam = copy.deepcopy(EXAM)
    exam["exam_id"], exam["questions"][3]["rubric"] = "bio-201", ITEMS
    put(s3, f"incoming/{NORTH.s3_prefix}/{D2}/exams/bio-201.json", exam_bytes(exam))
    other = [dict(r, exam_id="bio-201") for r in _rows(3, day=str(D2), prefix="t")]
    _load(conn, s3, NORTH, _rows(3, day=str(D2), prefix="u") + other, day=str(D2))
    _prepare(conn, s3, NORTH, D2, settings=BIG)
    new_q = {**q4, "rubric_items": ITEMS}
    items_cold = batch.cold_output_tokens(new_q, NORTH.model)
    assert items_cold == batch.count_tokens(
        '{"decisions": [{"id": "atp", "met": true, "evidence": ""}, {"id": "resp", "met": true, "evidence": ""}], '
        '"rationale": "", "confidence": 0.95}') + batch.ITEMS_RATIONALE_TOKENS + 2 * batch.EVIDENCE_TOKENS
    assert sorted(set(_requests(conn, D2))) == [("bio-101", math.ceil(total / lines)),
                                                ("bio-201", math.ceil(items_cold * total / (60 * cold)))]
    assert prepare.MIN_QUESTION_LINES <= 60 and prepare.MIN_INSTITUTION_LINES <= 60
