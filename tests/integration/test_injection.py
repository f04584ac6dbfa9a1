"""Issue 14's attack suite against the emulator playing an obeying model: 30 injected answers, whole night,
and not one inflated grade released without a human (the screen routes them as suspected_injection)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from tests.attacks import ATTACKS

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put, run_night

# min_confidence 0: only the screen (and range/evidence checks) may route, so what is caught is its doing
NORTH = replace(get_institution("northfield"), min_confidence=0.0, retry_backoff_seconds=0.05)
EXAM_DAY = date.fromisoformat(DAY)
HONEST = "The mitochondrion produces ATP through cellular respiration, supplying energy."


def test_an_obeying_model_gets_no_inflated_grade_released_unreviewed(conn, s3, emulator, openai_client):
    emulator.faults(obey_injection=True)
    rows = answers_for("honest", "st-honest", HONEST)
    for i, attack in enumerate(ATTACKS):
        rows += answers_for(f"s{i}", f"st{i}", attack, minute=i % 60)
    put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
    ingest_institution(NORTH, conn, s3)
    prepare.order_submissions(conn, NORTH, EXAM_DAY)
    prepare.grade_by_rule(conn, NORTH, EXAM_DAY)
    prepare.build_batches(Night(NORTH, EXAM_DAY, conn, s3))
    run_night(conn, s3, openai_client, NORTH, EXAM_DAY)

    q4 = "WHERE a.question_id = 'q4' AND a.submission_id <> 'honest'"
    assert conn.execute(f"SELECT count(*) FROM answers a {q4}").fetchone()[0] == len(ATTACKS)
    # The model obeyed some of them (full marks) ...
    obeyed = conn.execute(
        "SELECT count(DISTINCT r.custom_id) FROM llm_requests r JOIN answers a ON a.institution_id = r.institution_id "
        f"AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256 {q4} AND r.score >= 3").fetchone()[0]
    assert obeyed >= 10
    # ... and none of those is a current model grade above half the points: each waits for a human.
    inflated = conn.execute(
        "SELECT a.answer_text, g.score FROM grades g JOIN answers a USING (institution_id, submission_id, "
        f"question_id) {q4} AND g.is_current AND g.grader = 'llm' AND g.score > 1.5").fetchall()
    assert inflated == []
    reasons = dict(conn.execute("SELECT reason, count(*) FROM review_queue WHERE question_id = 'q4' "
                                "GROUP BY reason").fetchall())
    assert reasons.get("suspected_injection", 0) >= obeyed - reasons.get("score_out_of_range", 0)
    detail = conn.execute("SELECT detail FROM review_queue WHERE reason = 'suspected_injection' LIMIT 1").fetchone()[0]
    assert detail.startswith("the answer holds instruction-like text (")
    # The honest answer is graded by the model as usual, not flagged.
    honest = conn.execute("SELECT g.grader FROM grades g WHERE g.submission_id = 'honest' AND g.question_id = 'q4' "
                          "AND g.is_current").fetchone()
    assert honest == ("llm",)
