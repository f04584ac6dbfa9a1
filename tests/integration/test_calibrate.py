"""The threshold table and per-criterion agreement from the database, on the real stack: a night of rubric-item
answers, a reviewer's ticks, then the release's agreement report, the HTML report and the thresholds command."""

from __future__ import annotations

import csv
import io
import json

from gradeflow.admin import thresholds
from gradeflow.release import calibration, report
from gradeflow.review import packets as review

from .helpers import DAY, answers_for, put
from .test_rubric_items import EXAM_DAY, FULL, INJECTED, NORTH, PARTIAL, WRONG, _day, _read, _release


def _review(conn, s3, ticks: dict[str, tuple[str, str]]) -> None:
    """Reviewers answer the packet: answer text -> (criteria, score)."""
    from gradeflow.intake.ingest import ingest_institution

    packet = review.write_packet(conn, s3, NORTH, EXAM_DAY)
    rows = {r["answer_text"]: r for r in csv.DictReader(io.StringIO(_read(s3, packet.csv_key).decode("utf-8-sig")))}
    reply = io.StringIO()
    writer = csv.writer(reply)
    writer.writerow(["review_id", "criteria", "score", "reviewer"])
    for answer, (criteria, score) in ticks.items():
        writer.writerow([rows[answer]["review_id"], criteria, score, "ada"])
    put(s3, f"incoming/{NORTH.s3_prefix}/{DAY}/reviews/r1.csv", reply.getvalue().encode())
    ingest_institution(NORTH, conn, s3)


def test_threshold_table_and_criteria_agreement_from_reviews(conn, s3, emulator, openai_client, tmp_path, capsys):
    emulator.faults(obey_injection=True)
    _day(conn, s3, openai_client, answers_for("s1", "st1", FULL) + answers_for("s2", "st2", WRONG)
         + answers_for("s3", "st3", PARTIAL) + answers_for("s4", "st4", INJECTED))
    model = {r[0]: (float(r[1]), float(r[2]), r[3]) for r in conn.execute(
        "SELECT a.answer_text, r.score, r.confidence, r.review_reason FROM llm_requests r JOIN answers a USING "
        "(institution_id, exam_day, exam_id, question_id, answer_sha256) WHERE r.question_id = 'q4'")}
    assert model[PARTIAL][0] == 2.0 and model[PARTIAL][2] == "low_confidence"  # the model met atp only
    assert model[INJECTED][2] == "evidence_not_found"
    # The reviewer ticks atp and resp on PARTIAL (3 points: 1 from the model's 2, outside 0.5), none on INJECTED.
    _review(conn, s3, {PARTIAL: ("atp;resp", ""), INJECTED: ("-", "0")})

    # The threshold table: one human-scored pair (INJECTED was routed whatever the threshold: left out of the
    # pairs, and reviewed at every threshold in the workload); four pieces of model-graded work.
    first = EXAM_DAY
    table = calibration.institution_table(conn, NORTH, first, EXAM_DAY)
    assert (table["pairs"], table["population"], table["min_confidence"]) == (1, 4, 0.95)
    zero = table["rows"][0]
    assert (zero["threshold"], zero["review_share"], zero["released_pairs"], zero["within"]) == (0.0, 0.25, 1, 0)
    assert (zero["ci_low"], zero["ci_high"]) == (0.0, 0.7935)  # Wilson 0 of 1: [0, z²/(1+z²)]
    above = next(r for r in table["rows"] if r["threshold"] > model[PARTIAL][1])
    assert above["released_pairs"] == 0 and above["review_share"] == 0.5 and table["recommended"] is None

    # The release's agreement report has the per-criterion agreement; so has the daily HTML report.
    _release(conn, s3)
    figures = json.loads(_read(s3, f"reports/northfield/{DAY}/agreement-v1.json"))
    per = {c["criterion"]: c for c in figures["per_criterion"]}
    assert set(per) == {"atp", "resp", "chloro"} and all(c["question_id"] == "q4" and c["n"] == 2 for c in per.values())
    # PARTIAL: model atp, human atp+resp; INJECTED (the obeyed model): model atp+resp, human none
    assert (per["atp"]["agree"], per["resp"]["agree"], per["chloro"]["agree"]) == (1, 0, 2)
    assert (per["atp"]["kappa"], per["resp"]["kappa"], per["chloro"]["kappa"]) == (0.0, -1.0, None)
    page = _read(s3, report.write_report(conn, s3, NORTH, EXAM_DAY)).decode()
    assert "Agreement per rubric criterion" in page and "Choosing min_confidence" in page
    assert "No threshold is recommended" in page and "1 human-scored model grade(s)" in page

    # The command over the database prints the same table for the institution's window.
    out = tmp_path / "t.json"
    assert thresholds.main(["--institution", "northfield", "--until", DAY, "--days", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "northfield: exam days 2026-11-23 to 2026-11-23; 4 model-graded piece(s) of work, 1 with a human score" \
        in printed and "threshold table" in printed and "criterion q4/resp: n=1" in printed
    assert json.loads(out.read_text())["rows"] == json.loads(json.dumps(table["rows"]))
    assert thresholds.main(["--institution", "nowhere"]) == 2
    assert "unknown institution 'nowhere'" in capsys.readouterr().err
