"""`make evaluate` on a fresh machine: `gradeflow.admin.evaluate` against the Batch API emulator, with sample data.

Writes a CSV of human-scored free-text answers (the sample-day generator's questions and answers; the
"human" scores are the emulator's reference grade, rounded to whole points, and now and then a point
apart, as graders disagree; rubric-item questions carry their items as JSON in `rubric_items` and the human's
ticks in `human_criteria`: the emulator's decisions with one criterion now and then flipped), starts the
embedded stack, and runs `python -m gradeflow.admin.evaluate` on it through the same prompt and Batch API path
as the night (docs/evaluate.md). For your own data and endpoint:

    PYTHONPATH=plugins .venv/bin/python -m gradeflow.admin.evaluate answers.csv --base-url http://host/v1 --model m

    python -m devstack.evaluate_demo [--answers 20] [--csv demo-output/evaluate-sample.csv] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from devstack import sample_day, stack

DAY = date(2026, 11, 23)


def write_sample(path: Path, answers_per_question: int = 20, seed: int = 11) -> int:
    """Human-scored free-text answers from the sample-day generator; return the number of rows."""
    from devstack.batch_emulator import decide, grade

    rng = random.Random(seed)
    gen = sample_day._institution_rng(seed, "evaluate", DAY)
    exams = sample_day._pick_exams(gen)
    pools = sample_day._off_topic_pool(exams)
    students = sample_day._students(gen, "evaluate", answers_per_question + 5)
    rows = []
    for hour, exam in zip((9, 11, 13, 15), exams, strict=False):
        questions = dict(zip(exam.question_ids(), exam.questions, strict=True))
        for sub in sample_day._sit_exam(gen, exam, hour, students, answers_per_question, DAY, ZoneInfo("UTC"), pools):
            for row in sub.rows:
                q = questions[row.values["question_id"]]
                if q.qtype not in ("short_answer", "essay"):
                    continue
                spec, answer = q.spec, row.values["answer"]
                base = {"question_id": f"{exam.exam_id}/{row.values['question_id']}", "question_type": q.qtype,
                        "question": spec.get("prompt", ""), "rubric": "", "rubric_items": "",
                        "reference": spec["reference_answer"], "max_points": spec["max_points"], "answer": answer,
                        "human_score": "", "human_criteria": ""}
                if isinstance(spec["rubric"], list):  # rubric items: the human ticks criteria (one flipped at times)
                    met = [d["id"] for d in decide(spec["rubric"], answer)["decisions"] if d["met"]]
                    if rng.random() < 0.15:
                        flip = rng.choice(spec["rubric"])["id"]
                        met = [i for i in met if i != flip] if flip in met else [*met, flip]
                    rows.append({**base, "rubric_items": json.dumps(spec["rubric"]),
                                 "human_criteria": ";".join(met) or "-"})
                    continue
                truth = grade(spec["reference_answer"], answer, float(spec["max_points"]))["score"]
                human = int(truth + 0.5) + rng.choice((0, 0, 0, 0, 0, 0, 1, -1))
                rows.append({**base, "rubric": spec["rubric"],
                             "human_score": min(max(human, 0), spec["max_points"])})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    """Write the sample, run the evaluation on the embedded stack, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=20, help="answers per exam")
    parser.add_argument("--csv", type=Path, default=stack.PROJECT_ROOT / "demo-output" / "evaluate-sample.csv")
    parser.add_argument("--state-dir", type=Path, default=stack.PROJECT_ROOT / ".devstack-evaluate")
    parser.add_argument("--keep", action="store_true", help="keep the embedded stack running afterwards")
    args = parser.parse_args(argv)
    count = write_sample(args.csv, args.answers)
    print(f"wrote {count} human-scored answers to {args.csv}", file=sys.stderr)
    info = stack.up(args.state_dir, emulator_timing_scale=0.02)
    try:
        os.environ.update(stack.env(info))
        from gradeflow.admin import evaluate

        return evaluate.main([str(args.csv), "--poll-seconds", "0.5",
                              "--json", str(args.csv.with_suffix(".figures.json"))])
    finally:
        if not args.keep:
            stack.down(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
