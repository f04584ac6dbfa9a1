"""The grading loop closed, on the real stack: confidence routing, blind review packets, reviewers' files in,
human grades, releases that follow the reviews (visible only with their exports), agreement."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import replace
from datetime import date

import pyarrow.parquet as pq
import pytest

from gradeflow.core.config import get_institution
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from gradeflow.release import agreement, publish
from gradeflow.review import packets as review

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, grade_all_jobs, keys, put, release_day

# min_confidence 0.95 (the default). These tests count routed work exactly: the nightly audit sample (which would
# add items drawn from the released model grades) is off here and tested in test_audit_sample.py.
NORTH = replace(get_institution("northfield"), audit_rate=0.0, audit_min_per_question=0)
LAKE = replace(get_institution("lakeshore"), audit_rate=0.0, audit_min_per_question=0)
EXAM_DAY = date.fromisoformat(DAY)
GOOD = "The mitochondrion produces ATP through cellular respiration, supplying energy."
PARTIAL = "it makes atp"


@pytest.fixture(autouse=True)
def _coverage_confidence(emulator):
    """These tests route on the emulator's older confidence (unsure of every partial answer)."""
    emulator.faults(confidence_model="coverage")


def _day(conn, s3, client, rows, inst=NORTH):
    """Ingest, prepare and grade one day (one wave) for inst."""
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
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


def _reviews_csv(rows: list[dict], columns=("review_id", "score", "reviewer", "comment")) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _drop_reviews(s3, name: str, data: bytes, inst=NORTH):
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/reviews/{name}", data)


def test_low_confidence_and_out_of_range_grades_go_to_review_with_the_suggestion(conn, s3, emulator, openai_client):
    # GOOD covers every concept (confidence 0.95: released); PARTIAL covers some (confidence < 0.95: review).
    _day(conn, s3, openai_client, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", PARTIAL)
         + answers_for("s3", "st3", PARTIAL.upper()))
    reasons = conn.execute("SELECT reason, count(*) FROM review_queue GROUP BY 1").fetchall()
    assert reasons == [("low_confidence", 2)]
    graded = conn.execute("SELECT grader, count(*) FROM grades WHERE question_id = 'q4' GROUP BY 1").fetchall()
    assert graded == [("llm", 1)]
    score, rationale, confidence, status = conn.execute(
        "SELECT score, rationale, confidence, status FROM llm_requests WHERE status = 'review'").fetchone()
    assert float(confidence) < NORTH.min_confidence and rationale and score is not None
    detail = conn.execute("SELECT DISTINCT detail FROM review_queue").fetchone()[0]
    assert "below min_confidence 0.95" in detail


def test_review_packet_is_blind_one_row_per_piece_of_work_and_spreadsheet_safe(conn, s3, emulator, openai_client):
    formula = "=HYPERLINK(\"http://x\",\"atp\") it makes atp"
    rows = (answers_for("s1", "st-alice", PARTIAL) + answers_for("s2", "st-bob", PARTIAL)
            + answers_for("s3", "st-carol", formula))
    _day(conn, s3, openai_client, rows)
    packet = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    assert (packet.items, packet.answers) == (2, 3) and packet.by_reason == {"low_confidence": 2}
    assert packet.csv_key.startswith(f"reviews/northfield/{DAY}/open-") and packet.parquet_key.endswith(".parquet")
    raw = _read(s3, packet.csv_key).decode("utf-8-sig")
    for identity in ("st-alice", "st-bob", "st-carol", "s1", "s2", "s3", "gf1-"):
        assert f",{identity}," not in raw and identity + "," not in raw.split("\n", 1)[1][:10]
    assert "gf1-" not in raw and "st-" not in raw
    by_answer = {r["answer_text"]: r for r in _packet_rows(s3, packet)}
    assert by_answer[PARTIAL]["answers"] == "2"
    # Blind to why an item is there too: no reason, no confidence (an audited grade would be told by them).
    assert not {"reason", "suggested_confidence", "origin"} & set(by_answer[PARTIAL])
    assert by_answer["'" + formula]["question_text"] == "What does the mitochondrion do?"
    row = by_answer[PARTIAL]
    assert row["rubric"] and row["reference_answer"] and float(row["max_points"]) == 3
    assert row["suggested_rationale"] and row["suggested_score"]
    assert row["review_id"].startswith("rv-") and len(row["review_id"]) == 35
    table = pq.read_table(io.BytesIO(_read(s3, packet.parquet_key)))
    assert table.num_rows == 2 and formula in table.column("answer_text").to_pylist()
    assert not {"student_id", "submission_id", "custom_id"} & set(table.column_names)
    again = review.write_packet(conn, s3, NORTH, EXAM_DAY)  # the same open items keep their review ids
    assert {r["review_id"] for r in _packet_rows(s3, again)} == {r["review_id"] for r in _packet_rows(s3, packet)}


def test_reviews_round_trip_into_a_new_release_with_agreement(conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2", PARTIAL)
         + answers_for("s3", "st3", PARTIAL))
    first = _release(conn, s3)
    pending = conn.execute("SELECT count(*) FROM release_results WHERE release_id = %s AND status = 'pending' "
                           "AND review_reason = 'low_confidence'", (first["release_id"],)).fetchone()[0]
    assert pending == 2
    packet = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    (item,) = _packet_rows(s3, packet)
    suggestion = float(item["suggested_score"])
    # Reviewers fill in the packet itself and send it back (the packet's other columns are ignored).
    item.update(score="2", reviewer="dr.who", comment="names ATP; misses respiration and energy")
    _drop_reviews(s3, "batch-1.csv", _reviews_csv([item], columns=list(item)))
    report = ingest_institution(NORTH, conn, s3)
    assert (report.files_loaded, report.rows_loaded, report.rows_rejected) == (1, 1, 0)
    human = conn.execute("SELECT submission_id, score, reviewer, rationale, is_current FROM grades "
                         "WHERE grader = 'human' ORDER BY 1").fetchall()
    assert [(h[0], float(h[1]), h[2], h[4]) for h in human] == [("s2", 2.0, "dr.who", True),
                                                               ("s3", 2.0, "dr.who", True)]
    assert conn.execute("SELECT count(*) FROM review_queue WHERE resolved_at IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT status, reviews FROM review_items").fetchone() == ("reviewed", 1)
    audit = conn.execute("SELECT details FROM audit_log WHERE action = 'reviews_ingested'").fetchone()[0]
    assert audit["applied"] == 1 and audit["answers_graded"] == 2
    assert keys(s3, f"archive/northfield/{DAY}/") and not keys(s3, f"incoming/northfield/{DAY}/reviews/")
    # The same file dropped again is a duplicate: no second grade version.
    _drop_reviews(s3, "batch-1-again.csv", _reviews_csv([item], columns=list(item)))
    assert ingest_institution(NORTH, conn, s3).files_duplicate == 1
    assert conn.execute("SELECT count(*) FROM grades WHERE grader = 'human'").fetchone()[0] == 2
    assert review.announce_reviews(conn, NORTH) == [DAY] and review.announce_reviews(conn, NORTH) == []
    (row,) = agreement.agreement_rows(conn, NORTH, EXAM_DAY)  # the daily report's agreement section
    assert (row["question_id"], row["pairs"]) == ("q4", 2)
    assert row["mean_abs_diff"] == pytest.approx(abs(suggestion - 2.0))
    assert row["exact_share"] == (0.0 if suggestion != 2.0 else 1.0)

    second = _release(conn, s3)
    assert second["version"] == first["version"] + 1
    results = pq.read_table(io.BytesIO(_read(s3, f"releases/northfield/{DAY}/results-v2.parquet"))).to_pylist()
    s2q4 = next(r for r in results if r["submission_id"] == "s2" and r["question_id"] == "q4")
    assert (s2q4["status"], s2q4["grader"], s2q4["score"], s2q4["question_type"]) == ("graded", "human", 2.0,
                                                                                     "short_answer")
    assert s2q4["rationale"] == "names ATP; misses respiration and energy" and s2q4["grading_version"] == 1
    s1q4 = next(r for r in results if r["submission_id"] == "s1" and r["question_id"] == "q4")
    assert s1q4["grader"] == "llm" and s1q4["model"] == NORTH.model and s1q4["confidence"] >= 0.95
    subs = pq.read_table(io.BytesIO(_read(s3, f"releases/northfield/{DAY}/submissions-v2.parquet"))).to_pylist()
    s2 = next(r for r in subs if r["submission_id"] == "s2")
    assert (s2["answers"], s2["graded_rule"], s2["graded_model"], s2["graded_human"], s2["pending"]) == (4, 3, 0, 1, 0)
    assert s2["total_max"] == 7 and s2["total_score"] == 6 and s2["percent"] == pytest.approx(85.71)
    figures = json.loads(_read(s3, f"reports/northfield/{DAY}/agreement-v2.json"))
    assert figures["overall"]["n"] == 2
    assert figures["overall"]["mae"] == pytest.approx(abs(suggestion - 2.0))
    assert figures["overall"]["changed_share"] == (1.0 if suggestion != 2.0 else 0.0)
    assert [q["question_id"] for q in figures["per_question"]] == ["q4"]


def test_a_second_review_is_a_new_grade_version_and_keeps_the_history(conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL))
    (item,) = _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))
    _drop_reviews(s3, "r1.csv", _reviews_csv([{"review_id": item["review_id"], "score": 1, "reviewer": "a"}]))
    ingest_institution(NORTH, conn, s3)
    _drop_reviews(s3, "r2.jsonl", (json.dumps({"review_id": item["review_id"], "score": 2.5, "reviewer": "b",
                                               "comment": "second opinion"}) + "\n").encode())
    ingest_institution(NORTH, conn, s3)
    history = conn.execute("SELECT score, reviewer, attempt, is_current FROM grades WHERE grader = 'human' "
                           "ORDER BY grade_id").fetchall()
    assert [(float(s), r, a, c) for s, r, a, c in history] == [(1.0, "a", 1, False), (2.5, "b", 2, True)]
    assert conn.execute("SELECT count(*), max(reviews) FROM reviews JOIN review_items USING (review_id)"
                        ).fetchone() == (2, 2)


def test_one_file_naming_an_item_twice_keeps_its_last_row_and_reports_the_others(conn, s3, emulator, openai_client):
    # Two answers in review as two items (different texts); the file names the first item three times.
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL) + answers_for("s3", "st3", "atp, I think"))
    items = [row["review_id"] for row in _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))]
    assert len(items) == 2
    first, second = items
    _drop_reviews(s3, "r.csv", _reviews_csv([
        {"review_id": first, "score": 1, "reviewer": "a"},
        {"review_id": second, "score": 2, "reviewer": "a"},
        {"review_id": second, "score": 2, "reviewer": "a"},
        {"review_id": "no-such-item", "score": 1, "reviewer": "a"},
        {"review_id": first, "score": 3, "reviewer": "b", "comment": "on second thought"}]))
    report = ingest_institution(NORTH, conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (2, 3)
    lines = dict(conn.execute("SELECT row_number, reason FROM rejected_rows WHERE file_name = 'r.csv'").fetchall())
    assert lines[1].startswith("warning: review_id named again in row 5; the last row stands (score 3 by b)")
    assert lines[2].startswith("duplicate: the same review as row 3")
    assert "unknown review_id" in lines[4]
    history = conn.execute("SELECT review_id, score, reviewer, attempt, is_current FROM grades g"
                           " WHERE grader = 'human' ORDER BY review_id = %s DESC, grade_id", (first,)).fetchall()
    assert [(i == first, float(s), r, a, c) for i, s, r, a, c in history] == [
        (True, 3.0, "b", 1, True), (False, 2.0, "a", 1, True)]
    kept = conn.execute("SELECT source_row, answers_graded FROM reviews ORDER BY source_row").fetchall()
    assert kept == [(3, 1), (5, 1)]
    assert conn.execute("SELECT count(*) FROM answer_lifecycle WHERE state = 'in_review'").fetchone()[0] == 0


def test_a_nul_in_one_comment_rejects_that_row_only(conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL) + answers_for("s3", "st3", "atp, I think"))
    first, second = [row["review_id"] for row in _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))]
    _drop_reviews(s3, "r.csv", _reviews_csv([
        {"review_id": first, "score": 1, "reviewer": "a", "comment": "fine\x00but"},
        {"review_id": second, "score": 2, "reviewer": "a"}]))
    report = ingest_institution(NORTH, conn, s3)
    assert (report.rows_loaded, report.rows_rejected) == (1, 1)
    [(row, fld, reason)] = conn.execute("SELECT row_number, field, reason FROM rejected_rows").fetchall()
    assert (row, fld) == (1, "comment") and "NUL" in reason


def test_a_reviewers_file_of_100k_rows_with_repeated_ids_is_applied_in_seconds(conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL) + answers_for("s3", "st3", "atp, I think"))
    first, second = [row["review_id"] for row in _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))]
    rows = [{"review_id": (first, second)[i % 2], "score": (i % 3) / 2, "reviewer": f"r{i % 7}"}
            for i in range(100_000)]
    _drop_reviews(s3, "big.csv", _reviews_csv(rows))
    started = time.monotonic()
    report = ingest_institution(NORTH, conn, s3)
    elapsed = time.monotonic() - started
    assert (report.rows_loaded, report.rows_rejected) == (2, 99_998)
    assert elapsed < 60, elapsed  # one set-based round: it took minutes (a round per repetition) before


def test_an_identical_answer_arriving_after_the_review_takes_the_human_grade(conn, s3, emulator, openai_client):
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL))
    (item,) = _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))
    _drop_reviews(s3, "r1.csv", _reviews_csv([{"review_id": item["review_id"], "score": 1.5, "reviewer": "a"}]))
    ingest_institution(NORTH, conn, s3)
    put(s3, f"incoming/northfield/{DAY}/submissions/late.csv", csv_bytes(answers_for("s9", "st9", PARTIAL, minute=30)))
    ingest_institution(NORTH, conn, s3)
    plan = prepare.build_batches(Night(NORTH, EXAM_DAY, conn, s3))
    assert plan.jobs_written == 0
    late = conn.execute("SELECT grader, score, reviewer FROM grades WHERE submission_id = 's9' AND question_id = 'q4' "
                        "AND is_current").fetchone()
    assert (late[0], float(late[1]), late[2]) == ("human", 1.5, "a")


def test_bad_review_files_and_rows_get_named_rejects_and_never_block_good_ones(conn, tenant_conn, admin_conn, s3,
                                                                              emulator, openai_client):
    lake = tenant_conn("lakeshore")  # lakeshore's night works on its own connection (row-level security)
    _day(lake, s3, openai_client, answers_for("s2", "st2", PARTIAL), inst=LAKE)
    (other,) = _packet_rows(s3, review.write_packet(lake, s3, LAKE, EXAM_DAY))
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL) + answers_for("s3", "st3", "atp and energy"))
    items = _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))
    good, spare = items[0]["review_id"], items[1]["review_id"]
    rows = [
        {"review_id": good, "score": "2", "reviewer": "ok"},
        {"review_id": "rv-doesnotexist", "score": "1", "reviewer": "x"},
        {"review_id": other["review_id"], "score": "1", "reviewer": "x"},  # lakeshore's item
        {"review_id": spare, "score": "abc", "reviewer": "x"},
        {"review_id": spare, "score": "NaN", "reviewer": "x"},
        {"review_id": spare, "score": "3.5", "reviewer": "x"},
        {"review_id": spare, "score": "-1", "reviewer": "x"},
        {"review_id": spare, "score": "1", "reviewer": " "},
        {"review_id": "", "score": "1", "reviewer": "x"},
    ]
    _drop_reviews(s3, "mixed.csv", _reviews_csv(rows))
    _drop_reviews(s3, "no-reviewer-column.csv", b"review_id,score\nrv-x,1\n")
    _drop_reviews(s3, "broken.jsonl", b'{"review_id": "rv-x", "score": 1, "reviewer": "x"}\n[1, 2]\nnot json\n')
    _drop_reviews(s3, "latin1.csv", "review_id,score,reviewer\nrv-x,1,J\xfcrgen\n".encode("latin-1"))
    report = ingest_institution(NORTH, conn, s3)
    assert report.failed == [] and report.files_loaded == 2 and report.files_rejected == 2
    rejects = {(r[0], r[1], r[2]): r[3] for r in conn.execute(
        "SELECT file_name, row_number, field, reason FROM rejected_rows ORDER BY reject_id")}
    expect = {
        ("mixed.csv", 2, "review_id"): "unknown review_id",
        ("mixed.csv", 3, "review_id"): "unknown review_id",
        ("mixed.csv", 4, "score"): "score is not a finite number",
        ("mixed.csv", 5, "score"): "score is not a finite number",
        ("mixed.csv", 6, "score"): "score outside [0, 3]",
        ("mixed.csv", 7, "score"): "score outside [0, 3]",
        ("mixed.csv", 8, "reviewer"): "reviewer is missing",
        ("mixed.csv", 9, "review_id"): "review_id is missing",
        ("no-reviewer-column.csv", None, None): "missing column(s) ['reviewer']",
        ("broken.jsonl", 1, "review_id"): "unknown review_id",
        ("broken.jsonl", 2, None): "the line is not a JSON object",
        ("broken.jsonl", 3, None): "the line is not a JSON object",
        ("latin1.csv", None, None): "not UTF-8",
    }
    for where, reason in expect.items():
        assert reason in rejects.get(where, ""), (where, rejects.get(where))
    assert len(rejects) == len(expect)
    # The good row was applied; lakeshore's item is untouched; every file was archived; rejects reported.
    assert conn.execute("SELECT count(*) FROM grades WHERE grader = 'human'").fetchone()[0] == 1
    assert admin_conn.execute("SELECT status FROM review_items WHERE review_id = %s", (other["review_id"],)
                              ).fetchone() == ("open",)
    assert conn.execute("SELECT count(*) FROM review_items WHERE institution_id = 'lakeshore'").fetchone()[0] == 0
    assert keys(s3, "incoming/") == []
    report_keys = keys(s3, f"rejects/northfield/{DAY}/")
    assert len(report_keys) == 4 and any("mixed.csv" in k for k in report_keys)


def test_a_review_of_an_item_withdrawn_by_a_rerun_is_refused(conn, s3, emulator, openai_client):
    from gradeflow.admin.rerun import RerunRequest, reset_scope

    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL))
    (item,) = _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))
    reset_scope(conn, NORTH, RerunRequest("northfield", EXAM_DAY, "prepare", "question", "q4",
                                          "rubric was corrected today", "admin", False, "run-1"))
    # the rerun closed the item itself (no packet written since)
    assert conn.execute("SELECT status FROM review_items WHERE review_id = %s", (item["review_id"],)).fetchone()[0] \
        == "closed"
    _drop_reviews(s3, "late.csv", _reviews_csv([{"review_id": item["review_id"], "score": 1, "reviewer": "a"}]))
    ingest_institution(NORTH, conn, s3)
    assert "review item is closed" in conn.execute("SELECT reason FROM rejected_rows").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM grades WHERE grader = 'human'").fetchone()[0] == 0


def test_a_release_whose_export_failed_is_invisible_until_the_next_run_repairs_it(conn, s3, emulator, openai_client,
                                                                                monkeypatch):
    _day(conn, s3, openai_client, answers_for("s1", "st1", GOOD))
    gate = publish.validate(conn, NORTH, EXAM_DAY)
    released = publish.release(conn, NORTH, EXAM_DAY, gate.validation_id)
    monkeypatch.setenv("GRADEFLOW_BUCKET", "no-such-bucket")
    with pytest.raises(Exception, match="NoSuchBucket|does not exist"):
        publish.export(conn, s3, NORTH, EXAM_DAY, released["release_id"])
    monkeypatch.setenv("GRADEFLOW_BUCKET", "gradeflow")
    assert conn.execute("SELECT count(*) FROM published_releases").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM published_results").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM releases").fetchone()[0] == 1  # committed, flagged, not visible
    assert keys(s3, "releases/") == []
    # The next publish run finishes it first.
    assert publish.repair_exports(conn, s3, NORTH) == [released["release_id"]]
    assert conn.execute("SELECT count(*) FROM published_releases").fetchone()[0] == 1
    assert keys(s3, f"releases/northfield/{DAY}/") == [f"releases/northfield/{DAY}/results-v1.parquet",
                                                     f"releases/northfield/{DAY}/submissions-v1.parquet"]
    assert publish.repair_exports(conn, s3, NORTH) == []
    actions = [r[0] for r in conn.execute(
        "SELECT action FROM audit_log WHERE action LIKE 'release%' ORDER BY audit_id")]
    assert actions == ["release", "release_exported"]


def test_an_identical_answer_joining_the_review_before_the_score_arrives_is_graded_with_it(conn, s3, emulator,
                                                                                            openai_client):
    _day(conn, s3, openai_client, answers_for("s2", "st2", PARTIAL))
    (item,) = _packet_rows(s3, review.write_packet(conn, s3, NORTH, EXAM_DAY))
    put(s3, f"incoming/northfield/{DAY}/submissions/late.csv", csv_bytes(answers_for("s9", "st9", PARTIAL, minute=30)))
    ingest_institution(NORTH, conn, s3)
    # s9's answer joins the open review, not linked to the item yet
    prepare.build_batches(Night(NORTH, EXAM_DAY, conn, s3))
    assert conn.execute("SELECT count(*) FROM review_queue WHERE resolved_at IS NULL AND review_item IS NULL"
                        ).fetchone()[0] == 1
    _drop_reviews(s3, "r1.csv", _reviews_csv([{"review_id": item["review_id"], "score": 2, "reviewer": "a"}]))
    ingest_institution(NORTH, conn, s3)
    graded = conn.execute("SELECT submission_id FROM grades WHERE grader = 'human' AND is_current ORDER BY 1")
    assert [r[0] for r in graded] == ["s2", "s9"]
    assert conn.execute("SELECT count(*) FROM review_queue WHERE resolved_at IS NULL").fetchone()[0] == 0
    assert review.write_packet(conn, s3, NORTH, EXAM_DAY).items == 0
