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


def test_evaluate_offline_writes_the_input_and_reads_any_runners_output(tmp_path, emulator, openai_client, capsys):
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
    # Drop one line and break another: they are counted as not graded, never crash. A reply in a ```json fence
    # is read; an out-of-range score is graded (clamped) and counted apart; a line that is not JSON is named.
    kept = text.splitlines()
    by_cid = {json.loads(x)["custom_id"]: json.loads(x) for x in kept}
    ordered = [by_cid[x["custom_id"]] for x in lines]  # in the CSV's order (the output's order is not guaranteed)
    ordered[1]["response"]["body"]["choices"][0]["message"]["content"] = "not json"
    fenced = ordered[3]["response"]["body"]["choices"][0]["message"]
    fenced["content"] = "```json\n" + fenced["content"] + "\n```"
    high = ordered[4]["response"]["body"]["choices"][0]["message"]
    high["content"] = json.dumps({**json.loads(high["content"]), "score": 30})
    out_lines = [json.dumps(ordered[0]), json.dumps(ordered[1]), "{not json", *map(json.dumps, ordered[3:])]
    (tmp_path / "out.jsonl").write_text("\n".join(out_lines) + "\n")
    figures = tmp_path / "figures.json"
    assert evaluate.main([str(human), "--read-jsonl", str(tmp_path / "out.jsonl"), "--json", str(figures)]) == 0
    result = json.loads(figures.read_text())
    assert result["graded"] == len(ANSWERS) - 2 and result["not_graded"] == {"invalid_json": 1, "missing": 1}
    assert result["out_of_range"] == 1 and "score_out_of_range" not in result["not_graded"]
    err = capsys.readouterr().err
    assert f"{tmp_path / 'out.jsonl'}: line 3: not JSON" in err and "Traceback" not in err


HEAD = "question,rubric,reference,max_points,answer,human_score"
ITEMS_HEAD = "question,rubric_items,reference,max_points,answer,human_score,human_criteria"
ITEMS_JSON = '"[{""id"": ""atp"", ""description"": ""produces ATP"", ""points"": 2}]"'


@pytest.mark.parametrize(("content", "message"), [
    ("question,answer\nq,a\n", "header: missing column(s) ['reference', 'max_points', 'human_score', 'rubric"),
    (f"{HEAD}\nq,r,x,3,a,abc\n", "row 1, field 'human_score': not a finite number"),
    (f"{HEAD}\nq,r,x,3,a,4\n", "row 1, field 'human_score': 4 is outside [0, max_points = 3]"),
    (f"{HEAD}\nq,r,x,0,a,0\n", "row 1, field 'max_points': must be > 0"),
    (f"{HEAD}\nq,,x,3,a,1\n", "row 1, field 'rubric': required"),
    (f"{HEAD},question_type\nq,r,x,3,a,1,essay\nq,r,x,3,a,1,poem\n", "row 2, field 'question_type'"),
    (f"{HEAD},Question\nq,r,x,3,a,1,q\n", "header: column 'question' appears twice"),
    (f"{ITEMS_HEAD}\nq,[oops,x,3,a,1,\n", "row 1, field 'rubric_items': not JSON"),
    (f'{ITEMS_HEAD}\nq,"[{{""id"": ""a""}}]",x,3,a,1,\n', "row 1, field 'rubric_items[0].description': required"),
    (f"{ITEMS_HEAD}\nq,{ITEMS_JSON},x,3,a,,nope\n", "row 1, field 'human_criteria': unknown criterion id(s)"),
    (f"{ITEMS_HEAD}\nq,{ITEMS_JSON},x,3,a,1,atp\n", "row 1, field 'human_score': 1 differs from 2"),
    (f"{HEAD},human_criteria\nq,r,x,3,a,1,atp\n", "row 1, field 'human_criteria': criteria given, but"),
    (f"{HEAD}\n", "no rows"),
])
def test_evaluate_names_bad_input(tmp_path, capsys, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert evaluate.main([str(path), "--write-jsonl", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and message in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists()


def test_every_bad_row_is_named_on_its_own_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEAD}\nq,r,x,3,a,9\nq,r,x,3,a,1\nq,r,x,3,a,zz\n")
    assert evaluate.main([str(path), "--write-jsonl", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[1].split(",")[0] for line in err] == ["row 1", "row 3"]


def test_non_utf8_input_and_output_are_named_not_a_traceback(tmp_path, capsys):
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(f"{HEAD}\nq,r,x,3,ok,1\nq,r,x,3,caf\xe9,1\n".encode("latin-1"))
    assert evaluate.main([str(latin), "--write-jsonl", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{latin}: line 3: not UTF-8 (byte 0xe9" in err and "Traceback" not in err
    good = _csv(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"custom_id": "x\xff"}\n')
    assert evaluate.main([str(good), "--read-jsonl", str(out)]) == 2
    assert f"{out}: line 1: not UTF-8" in capsys.readouterr().err


def test_headers_are_case_insensitive_and_trimmed(tmp_path):
    path = tmp_path / "upper.csv"
    path.write_text(" QUESTION ,Rubric,Reference,MAX_POINTS,Answer,Human_Score,Question_ID\nq,r,x,3,a,1,Q9\n")
    (case,) = evaluate.read_cases(path.read_bytes(), "gpt-4.1-mini")
    assert (case.question_id, case.max_points, case.human_score) == ("Q9", 3.0, 1.0)


RUBRIC = [{"id": "atp", "description": "produces ATP molecules", "points": 2},
          {"id": "resp", "description": "cellular respiration", "points": 1}]
TICKED = [  # (answer, the human's ticks): the human disagrees with the model on 'resp' once
    ("The mitochondrion produces ATP through cellular respiration.", "atp;resp"),
    ("It produces ATP molecules.", "atp"),
    ("It does respiration in cells, making ATP molecules", "atp"),
    ("It is the nucleus.", "-"),
]


def test_rubric_items_per_criterion_agreement_and_the_threshold_table(tmp_path, emulator, openai_client, capsys):
    path = tmp_path / "items.csv"
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["Question_ID", "Question", "Rubric_Items", "Reference", "Max_Points", "Answer", "Human_Score",
                     "Human_Criteria"])
    for answer, ticks in TICKED:
        writer.writerow(["q4", Q4["prompt"], json.dumps(RUBRIC), Q4["reference_answer"], 3, answer, "", ticks])
    path.write_text(buf.getvalue())
    out = tmp_path / "figures.json"
    assert evaluate.main([str(path), "--poll-seconds", "0.1", "--json", str(out), "--target-accuracy", "0.2"]) == 0
    result = json.loads(out.read_text())
    assert result["graded"] == 4 and result["not_graded"] == {} and result["evidence_not_found"] == 0
    by_criterion = {c["criterion"]: c for c in result["per_criterion"]}
    assert by_criterion["atp"]["n"] == 4 and by_criterion["atp"]["agreement"] == 1.0
    resp = by_criterion["resp"]
    assert resp["agree"] == 3 and resp["ci_low"] < 0.75 < resp["ci_high"]
    table = result["thresholds"]
    assert table["pairs"] == 4 and table["rows"][0] == {**table["rows"][0], "threshold": 0.0, "review_share": 0.0,
                                                        "released_pairs": 4}
    printed = capsys.readouterr().out
    assert "per rubric criterion" in printed and "threshold table" in printed
    assert "Recommended min_confidence" in printed


def test_an_output_line_holding_unicode_line_separators_is_read_whole():
    """JSON allows U+0085, U+2028 and U+2029 raw inside a string; the output file's lines end at "\\n" only."""
    lines = [{"custom_id": f"case-{i}", "response": {"status_code": 200, "body": {"note": f"a\u2028b\u2029c\x85d {i}"}}}
             for i in range(3)]
    problems: list[str] = []
    read = evaluate.read_output("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), problems)
    assert problems == []
    assert read == {line["custom_id"]: line for line in lines}
