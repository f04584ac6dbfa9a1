"""`python -m gradeflow.admin.evaluate` end to end on the Batch API emulator: online, and offline via JSONL."""

from __future__ import annotations

import csv
import io
import json

import pytest

from gradeflow.admin import evaluate

from .helpers import EXAM

Q4 = EXAM["questions"][3]
ANSWERS = [  # (answer, human score)
    ("The mitochondrion produces ATP through cellular respiration, supplying energy.", 3),
    ("It produces ATP by respiration and gives the cell energy", 3),
    ("it makes atp", 1),
    ("ATP and energy", 2),
    ("respiration", 1),
    ("it is the nucleus of the cell", 0),
    ("", 0),
    ("energy", 0.5),
]


def _csv(tmp_path, rows=ANSWERS):
    path = tmp_path / "human.csv"
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["question_id", "question", "rubric", "reference", "max_points", "answer", "human_score"])
    for answer, score in rows:
        writer.writerow(["q4", Q4["prompt"], Q4["rubric"], Q4["reference_answer"], Q4["max_points"], answer, score])
    path.write_text(buf.getvalue())
    return path


def test_evaluate_through_the_batch_api_prints_agreement_and_confidence_bands(tmp_path, emulator, openai_client,
                                                                              capsys):
    out = tmp_path / "figures.json"
    assert evaluate.main([str(_csv(tmp_path)), "--poll-seconds", "0.1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["cases"] == result["graded"] == len(ANSWERS) and result["not_graded"] == {}
    overall = result["overall"]
    assert overall["n"] == len(ANSWERS) and overall["pearson_r"] > 0.8 and 0 <= overall["mae"] < 1
    assert [q["question_id"] for q in result["per_question"]] == ["q4"]
    assert sum(b["n"] for b in result["by_confidence"]) == len(ANSWERS)
    assert result["by_confidence"][0]["auto_released_share"] == 1.0
    assert emulator.stats()["batches_created"] == 1
    printed = capsys.readouterr().out
    assert "overall" in printed and "min_conf" in printed and "q4" in printed


def test_evaluate_offline_writes_the_input_and_reads_any_runners_output(tmp_path, emulator, openai_client):
    human = _csv(tmp_path)
    batch_in = tmp_path / "in.jsonl"
    assert evaluate.main([str(human), "--write-jsonl", str(batch_in)]) == 0
    lines = [json.loads(x) for x in batch_in.read_text().splitlines()]
    assert len(lines) == len(ANSWERS) and len({x["custom_id"] for x in lines}) == len(ANSWERS)
    assert lines[0]["body"]["response_format"]["json_schema"]["name"] == "grade"
    # Any runner of the Batch format (here the emulator, driven by hand) produces the output file.
    uploaded = openai_client.files.create(file=("in.jsonl", batch_in.read_bytes()), purpose="batch")
    remote = openai_client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                          completion_window="24h")
    while remote.status not in ("completed", "failed", "expired", "cancelled"):
        remote = openai_client.batches.retrieve(remote.id)
    text = openai_client.files.content(remote.output_file_id).text
    # Drop one line and break another: they are counted as not graded, never crash.
    kept = text.splitlines()
    broken = json.loads(kept[1])
    broken["response"]["body"]["choices"][0]["message"]["content"] = "not json"
    (tmp_path / "out.jsonl").write_text("\n".join([kept[0], json.dumps(broken), *kept[3:]]) + "\n")
    figures = tmp_path / "figures.json"
    assert evaluate.main([str(human), "--read-jsonl", str(tmp_path / "out.jsonl"), "--json", str(figures)]) == 0
    result = json.loads(figures.read_text())
    assert result["graded"] == len(ANSWERS) - 2 and result["not_graded"] == {"missing": 1, "invalid_json": 1}


@pytest.mark.parametrize(("content", "message"), [
    ("question,answer\nq,a\n", "missing column"),
    ("question,rubric,reference,max_points,answer,human_score\nq,r,x,3,a,abc\n", "row 1, field 'human_score'"),
    ("question,rubric,reference,max_points,answer,human_score\nq,r,x,3,a,4\n", "row 1"),
])
def test_evaluate_names_bad_input(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert evaluate.main([str(path), "--write-jsonl", str(tmp_path / "x.jsonl")]) == 2
    assert message in capsys.readouterr().err
