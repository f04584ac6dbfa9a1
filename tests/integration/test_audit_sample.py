"""The audit sample on the real stack (docs/review-round-trip.md, "The audit sample"): a random, per-question
stratified sample of the model grades released without a human goes blind into the review packet, stays released,
and the reviewer's score supersedes it in the next version; the figures (share within tolerance, MAE, 95%
intervals) of all audits to date in the agreement report, routed work apart."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
from dataclasses import replace
from datetime import date

import pyarrow.parquet as pq
import pytest

from gradeflow.core import intervals
from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from gradeflow.release import audit
from gradeflow.review import packets as review

from .helpers import COLUMNS, DAY, EXAM, exam_bytes, grade_all_jobs, put, release_day

EXAM_DAY = date.fromisoformat(DAY)
# audit_rate 0.1, at least 2 per question: q4 (30 distinct answers released by the model) draws ceil(0.1 * N) >= 3,
# q5 (3 answers) draws 2: its minimum.
NORTH = replace(get_institution("northfield"), audit_rate=0.1, audit_min_per_question=2, tolerance_points=0.5)
GOOD = "The mitochondrion produces ATP through cellular respiration, supplying energy"
PARTIAL = "it makes atp"  # unsure (coverage confidence): routed to review as low_confidence
GOOD5 = "Chloroplasts capture light energy for photosynthesis in plants"


@pytest.fixture(autouse=True)
def _coverage_confidence(emulator):
    """Route on the emulator's coverage confidence (a full answer is sure, a partial one is not), as
    test_review_loop.py does: which grades are released unreviewed is then known exactly."""
    emulator.faults(confidence_model="coverage")


def _exam() -> dict:
    exam = copy.deepcopy(EXAM)
    exam["questions"].append({"question_id": "q5", "type": "short_answer", "max_points": 2,
                              "prompt": "What do chloroplasts do?",
                              "rubric": "One point each for light energy and photosynthesis.",
                              "reference_answer": "Chloroplasts capture light energy for photosynthesis in plants"})
    return exam


def _rows() -> list[dict]:
    """32 submissions: q4 answered fully in 30 distinct ways and partially twice (routed); q5 answered by 3."""
    rows = []
    for n in range(32):
        q4 = (PARTIAL, "atp, I think")[n - 30] if n >= 30 else f"{GOOD} (answer {n})"
        values = {"q1": "B", "q2": "false", "q3": "46", "q4": q4}
        if n < 3:
            values["q5"] = f"{GOOD5} (answer {n})"
        rows += [{"submission_id": f"s{n}", "student_id": f"st{n}", "exam_id": "bio-101", "question_id": q,
                  "answer": a, "submitted_at": f"{DAY}T10:00:00-05:00"} for q, a in values.items()]
    return rows


def _csv(rows: list[dict], columns=COLUMNS) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _day(conn, s3, client, inst=NORTH):
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes(_exam()))
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/submissions/a.csv", _csv(_rows()))
    ingest_institution(inst, conn, s3)
    prepare.order_submissions(conn, inst, EXAM_DAY)
    prepare.grade_by_rule(conn, inst, EXAM_DAY)
    prepare.build_batches(Night(inst, EXAM_DAY, conn, s3))
    grade_all_jobs(conn, s3, client, inst, EXAM_DAY)


def _release(conn, s3, inst=NORTH):
    return release_day(conn, s3, inst, EXAM_DAY)


def _read(s3, key) -> bytes:
    return s3.get_object(Bucket="gradeflow", Key=key)["Body"].read()


def _packet_rows(s3, packet) -> list[dict]:
    return list(csv.DictReader(io.StringIO(_read(s3, packet.csv_key).decode("utf-8-sig"))))


def _audit_items(conn) -> dict[str, str]:
    """{review_id: custom_id} of the audit items."""
    return dict(conn.execute("SELECT review_id, custom_id FROM review_items WHERE origin = 'audit'").fetchall())


def _eligible(conn) -> dict[str, list[str]]:
    """Per question, the model requests released without a human (graded, with current model grades)."""
    rows = conn.execute(
        "SELECT r.question_id, r.custom_id FROM llm_requests r WHERE r.status IN ('graded', 'reviewed') "
        "AND NOT EXISTS (SELECT 1 FROM review_queue v WHERE v.custom_id = r.custom_id) ORDER BY 1, 2").fetchall()
    found: dict[str, list[str]] = {}
    for qid, cid in rows:
        found.setdefault(qid, []).append(cid)
    return found


def test_the_sample_is_stratified_reproducible_idempotent_and_never_routed_or_rule(conn, s3, emulator,
                                                                                  openai_client):
    _day(conn, s3, openai_client)
    eligible = _eligible(conn)
    assert len(eligible["q4"]) == 30 and len(eligible["q5"]) == 3  # the routed PARTIAL answers are not eligible
    routed = {r[0] for r in conn.execute("SELECT custom_id FROM llm_requests WHERE status = 'review'")}
    assert len(routed) == 2

    packet = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    drawn = _audit_items(conn)
    assert packet.audit == len(drawn) and packet.by_reason == {"low_confidence": 2}
    per_question = dict(conn.execute("SELECT question_id, count(*) FROM review_items WHERE origin = 'audit' "
                                     "GROUP BY 1").fetchall())
    # Stratified: every free-text question, max(min, ceil(rate * N)) each (all of a question smaller than that).
    assert per_question == {"q4": max(2, math.ceil(0.1 * 30)), "q5": 2}
    # Never a rule grade (q1-q3 have no request) nor routed work.
    assert not set(drawn.values()) & routed
    # Reproducible: per question, the lowest md5(institution / day / custom_id).
    for qid, cids in eligible.items():
        keyed = sorted(cids, key=lambda c: (hashlib.md5(f"northfield/{DAY}/{c}".encode()).hexdigest(), c))
        assert {c for c in drawn.values() if c in cids} == set(keyed[:per_question[qid]])
    # An audit, not a hold: the answers stay graded by the model, nothing waits in review for them.
    states = conn.execute(
        "SELECT DISTINCT l.state, l.grader FROM answer_lifecycle l JOIN grades g ON g.grade_id = l.grade_id "
        "WHERE g.custom_id = ANY(%s)", (list(drawn.values()),)).fetchall()
    assert states == [("graded", "llm")]
    assert conn.execute("SELECT count(*) FROM review_queue WHERE custom_id = ANY(%s)",
                        (list(drawn.values()),)).fetchone()[0] == 0

    # Idempotent: the packet written again (a rerun of the task, and the publish run's packet) draws nothing new.
    again = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    assert _audit_items(conn) == drawn and again.audit == packet.audit
    assert {r["review_id"] for r in _packet_rows(s3, again)} == {r["review_id"] for r in _packet_rows(s3, packet)}

    # The minimum per question is kept when the rate alone would draw fewer; 0 and 0 draw nothing.
    assert review.write_packet(conn, s3, replace(NORTH, audit_rate=0.0, audit_min_per_question=0),
                               EXAM_DAY).audit == packet.audit
    more = review.write_packet(conn, s3, replace(NORTH, audit_rate=0.0, audit_min_per_question=5), EXAM_DAY)
    assert more.audit == 5 + 3 and conn.execute(
        "SELECT count(*) FROM review_items WHERE origin = 'audit' AND question_id = 'q5'").fetchone()[0] == 3


def test_the_packet_is_blind_an_audit_row_looks_like_a_routed_row(conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client)
    packet = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    drawn = _audit_items(conn)
    rows = _packet_rows(s3, packet)
    audit_rows = [r for r in rows if r["review_id"] in drawn]
    routed_rows = [r for r in rows if r["review_id"] not in drawn]
    assert audit_rows and len(routed_rows) == 2
    # Same columns, every one filled the same way (a suggestion with score and rationale, no reason, no confidence).
    assert list(audit_rows[0]) == list(routed_rows[0]) == [*review.PACKET_COLUMNS, *review.RETURN_COLUMNS]
    assert not {"reason", "origin", "suggested_confidence", "custom_id"} & set(rows[0])
    filled = {c for c in rows[0] if any(r[c] for r in routed_rows)}
    for row in audit_rows:
        assert {c for c in row if row[c]} == filled
        assert row["earlier_reviews"] == "0" and row["answers"] == "1"
    raw = _read(s3, packet.csv_key).decode("utf-8-sig").lower()
    assert "audit" not in raw and "low_confidence" not in raw
    # Same ordering rule for both: by question, then by the random review id.
    assert [(r["exam_id"], r["question_id"], r["review_id"]) for r in rows] == sorted(
        (r["exam_id"], r["question_id"], r["review_id"]) for r in rows)
    table = pq.read_table(io.BytesIO(_read(s3, packet.parquet_key)))
    assert table.column_names == list(review.PACKET_COLUMNS)


def test_an_audited_grade_is_released_then_superseded_by_the_human_score_with_the_figures(
        conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client)
    packet = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    drawn = _audit_items(conn)
    first = _release(conn, s3)
    v1 = pq.read_table(io.BytesIO(_read(s3, f"releases/northfield/{DAY}/results-v1.parquet"))).to_pylist()
    audited_answers = {r[0] for r in conn.execute(
        "SELECT submission_id || '/' || question_id FROM grades WHERE is_current AND custom_id = ANY(%s)",
        (list(drawn.values()),))}
    by_answer = {f"{r['submission_id']}/{r['question_id']}": r for r in v1}
    for key in audited_answers:  # released meanwhile: the model's grade, origin audit, with its suggestion
        row = by_answer[key]
        assert (row["status"], row["grader"], row["origin"]) == ("graded", "llm", "audit")
        assert row["suggested_score"] == row["score"]
    others = [r for k, r in by_answer.items() if k not in audited_answers]
    assert {r["origin"] for r in others if r["grader"] == "llm"} == {"model"}
    assert {r["origin"] for r in others if r["grader"] == "rule"} == {"rule"}
    assert {(r["status"], r["origin"]) for r in others if r["grader"] is None} == {("pending", None)}
    assert all(r["suggested_score"] is None for r in others if r["grader"] == "llm")

    # Reviewers score the packet blind: three audit items (the model's score, off by 0.5, off by 2) and a routed one.
    rows = _packet_rows(s3, packet)
    audit_rows = sorted((r for r in rows if r["review_id"] in drawn), key=lambda r: r["review_id"])[:3]
    routed_row = next(r for r in rows if r["review_id"] not in drawn)
    model = [float(r["suggested_score"]) for r in audit_rows]
    maxima = [float(r["max_points"]) for r in audit_rows]
    human = [model[0], abs(model[1] - 0.5), model[2] - 2 if model[2] >= 2 else model[2] + 2]
    assert all(0 <= h <= m for h, m in zip(human, maxima, strict=True))
    scored = [{"review_id": r["review_id"], "score": f"{h:g}", "reviewer": "dr.blind", "comment": "checked"}
              for r, h in zip(audit_rows, human, strict=True)]
    scored.append({"review_id": routed_row["review_id"], "score": "1", "reviewer": "dr.blind", "comment": "partial"})
    put(s3, f"incoming/northfield/{DAY}/reviews/r1.csv", _csv(scored, ("review_id", "score", "reviewer", "comment")))
    report = ingest_institution(NORTH, conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (4, 0)
    statuses = conn.execute("SELECT i.status, r.status FROM review_items i JOIN llm_requests r USING (custom_id) "
                            "WHERE i.review_id = %s", (audit_rows[0]["review_id"],)).fetchone()
    assert statuses == ("reviewed", "reviewed")

    second = _release(conn, s3)
    assert second["version"] == first["version"] + 1
    v2 = pq.read_table(io.BytesIO(_read(s3, f"releases/northfield/{DAY}/results-v2.parquet"))).to_pylist()
    scored_cids = [drawn[r["review_id"]] for r in audit_rows]
    for cid, m, h in zip(scored_cids, model, human, strict=True):
        (answer,) = conn.execute("SELECT submission_id, question_id FROM grades WHERE custom_id = %s AND grader = "
                                 "'human' AND is_current", (cid,)).fetchall()
        row = next(r for r in v2 if (r["submission_id"], r["question_id"]) == answer)
        assert (row["grader"], row["origin"], row["score"], row["suggested_score"]) == ("human", "audit", h, m)
        assert row["rationale"] == "checked"
    assert {r["origin"] for r in v2 if r["grader"] == "human" and r["rationale"] == "partial"} == {"routed"}
    # The model grades are kept (superseded), not overwritten.
    assert conn.execute("SELECT count(*) FROM grades WHERE custom_id = ANY(%s) AND grader = 'llm' "
                        "AND NOT is_current", (scored_cids,)).fetchone()[0] == 3

    figures = json.loads(_read(s3, f"reports/northfield/{DAY}/agreement-v2.json"))
    assert figures["overall"]["n"] == 1  # the routed agreement: the routed item only
    found = figures["audit"]
    assert found["tolerance_points"] == 0.5 and found["items"]["reviewed"] == 3
    overall = found["unreviewed_model"]["overall"]
    diffs = [abs(m - h) for m, h in zip(model, human, strict=True)]  # 0, 0.5, 2: two within ±0.5
    assert (overall["n"], overall["within_tolerance"]) == (3, round(2 / 3, 4))
    assert overall["within_tolerance_ci95"] == [round(x, 4) for x in intervals.wilson(2, 3)]
    assert overall["mae"] == pytest.approx(round(sum(diffs) / 3, 4))
    assert overall["mae_ci95"] == [round(x, 4) for x in intervals.bootstrap_mean(diffs)]
    assert sum(q["n"] for q in found["unreviewed_model"]["per_question"]) == 3
    assert found["routed"]["overall"]["n"] == 1
    assert json.loads(json.dumps(audit.audit_report(conn, NORTH))) == found

    # A reviewed audit counts towards the night's target: a new packet draws nothing more.
    before = len(drawn)
    review.write_packet(conn, s3, NORTH, EXAM_DAY)
    assert len(_audit_items(conn)) == before


def test_a_rerun_closes_open_audit_items_and_the_new_version_is_sampled_anew(conn, s3, emulator, openai_client):
    from gradeflow.admin.rerun import RerunRequest, reset_scope
    from gradeflow.release import report

    _day(conn, s3, openai_client)
    review.write_packet(conn, s3, NORTH, EXAM_DAY)
    before = dict(conn.execute("SELECT review_id, question_id FROM review_items WHERE origin = 'audit'").fetchall())
    reset_scope(conn, NORTH, RerunRequest("northfield", EXAM_DAY, "prepare", "question", "q4",
                                          "rubric was corrected today", "admin", False, "run-1"))
    status = dict(conn.execute("SELECT review_id, status FROM review_items WHERE origin = 'audit'").fetchall())
    assert {rid: status[rid] for rid in before} == {rid: "closed" if q == "q4" else "open" for rid, q in before.items()}
    # A reviewer's score of a withdrawn audit item is refused like any closed item's.
    closed = next(rid for rid, q in before.items() if q == "q4")
    put(s3, f"incoming/northfield/{DAY}/reviews/late.csv",
        _csv([{"review_id": closed, "score": "1", "reviewer": "a"}], ("review_id", "score", "reviewer")))
    ingest_institution(NORTH, conn, s3)
    assert "review item is closed" in conn.execute("SELECT reason FROM rejected_rows").fetchone()[0]

    _day(conn, s3, openai_client)  # the regrade: grading version 2 of q4
    review.write_packet(conn, s3, NORTH, EXAM_DAY)
    fresh = conn.execute("SELECT count(*) FROM review_items i JOIN llm_requests r USING (institution_id, custom_id) "
                         "WHERE i.origin = 'audit' AND i.status = 'open' AND r.question_id = 'q4' AND r.version = 2"
                         ).fetchone()[0]
    assert fresh == max(2, math.ceil(0.1 * 30))
    # The daily report shows the audit section (no audit scored yet).
    page = report.render(report.gather(conn, NORTH, EXAM_DAY))
    assert "Audit: model grades released without a human" in page and "No audited grade has been scored" in page
