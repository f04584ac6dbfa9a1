"""Evaluate a model against human graders before trusting it: `python -m gradeflow.admin.evaluate answers.csv`.

The CSV holds human-scored answers, one per row: `question`, `rubric`, `reference`, `max_points`,
`answer`, `human_score` (optional: `question_id`, `question_type` = short_answer | essay). Every row goes
through the very prompt and Batch API path the night uses (`gradeflow.grading.batch.build_request`, one JSONL
input file, the openai_batch provider's upload, create and polling, `batch.parse_line` on the output and error files)
against whatever OpenAI-compatible endpoint you name, or offline:

    python -m gradeflow.admin.evaluate answers.csv                         # the Airflow connection gradeflow_openai
    python -m gradeflow.admin.evaluate answers.csv --base-url http://host:8000/v1 --model my-model
    python -m gradeflow.admin.evaluate answers.csv --write-jsonl batch-input.jsonl    # then run it anywhere
    python -m gradeflow.admin.evaluate answers.csv --read-jsonl batch-output.jsonl    # e.g. from vLLM's run_batch

It prints (and with --json writes) n, Pearson r, quadratic weighted kappa, MAE and the share of
model grades a human would change, overall and per question, and the same by model-confidence band
with what each `min_confidence` would release unreviewed: the data to choose `min_confidence` from.
Needs no Airflow scheduler and no GradeFlow database: only this package and the `openai` SDK.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradeflow.core.config import FREE_TEXT_TYPES, OPENAI_CONN_ID
from gradeflow.grading import batch, providers
from gradeflow.intake.contract import answer_sha256
from gradeflow.release import agreement

REQUIRED = ("question", "rubric", "reference", "max_points", "answer", "human_score")


class EvaluationInputError(ValueError):
    """The CSV cannot be used; the message names the row and the field."""


@dataclass(frozen=True)
class Case:
    """One human-scored answer and the request that grades it."""

    custom_id: str
    question_id: str
    max_points: float
    human_score: float
    request: dict


def _number(row: dict, field: str, number: int) -> float:
    try:
        value = float(str(row.get(field, "")).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise EvaluationInputError(f"row {number}, field {field!r}: not a finite number: {row.get(field)!r}")
    return value


def read_cases(data: bytes, model: str) -> list[Case]:
    """The CSV's rows as grading requests, built exactly as the night builds them."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise EvaluationInputError(f"missing column(s) {missing}; expected {list(REQUIRED)}")
    cases = []
    for number, row in enumerate(reader, start=1):
        max_points, human = _number(row, "max_points", number), _number(row, "human_score", number)
        if max_points <= 0 or not 0 <= human <= max_points:
            raise EvaluationInputError(f"row {number}: need max_points > 0 and 0 <= human_score <= max_points")
        qtype = (row.get("question_type") or "short_answer").strip()
        if qtype not in FREE_TEXT_TYPES:
            raise EvaluationInputError(f"row {number}, field 'question_type': one of {sorted(FREE_TEXT_TYPES)}")
        question_id = (row.get("question_id") or "").strip() or \
            "q-" + hashlib.sha256(row["question"].encode()).hexdigest()[:8]
        question = {"qtype": qtype, "prompt": row["question"], "rubric": row["rubric"],
                    "reference_answer": row["reference"], "max_points": max_points}
        sha = answer_sha256(row["answer"])
        cid = batch.custom_id("evaluate", "row", str(number), question_id, sha)
        request = batch.build_request(cid, model, question, row["answer"])
        cases.append(Case(cid, question_id, max_points, human, request))
    return cases


def input_jsonl(cases: list[Case]) -> bytes:
    """The Batch API input file (one request per line)."""
    return "".join(json.dumps(c.request, ensure_ascii=False) + "\n" for c in cases).encode()


def read_output(text: str) -> dict[str, dict]:
    """Output (or error) file lines keyed by custom_id (never by position)."""
    lines = {}
    for raw in text.splitlines():
        if raw.strip():
            line = json.loads(raw)
            lines[str(line.get("custom_id"))] = line
    return lines


def run_batch(provider: Any, cases: list[Case], poll_seconds: float = 5.0, timeout_seconds: float = 86400) -> dict:
    """Upload, create, poll and download one batch through a batch provider (gradeflow.grading.providers; an
    OpenAI SDK client is taken as the openai_batch provider); return its lines by custom_id."""
    provider = providers.as_provider(provider)
    file_id = provider.upload("evaluate.jsonl", input_jsonl(cases))
    remote = provider.create(file_id, {"gradeflow_evaluate": "1"})
    deadline = time.monotonic() + timeout_seconds
    while remote.status not in batch.TERMINAL_STATUSES:
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {remote.id} still {remote.status} after {timeout_seconds:.0f}s")
        if not provider.runs_locally:
            time.sleep(poll_seconds)
        remote = provider.work(remote.id)
    lines: dict[str, dict] = {}
    for file_id in (remote.error_file_id, remote.output_file_id):
        lines.update({str(line.get("custom_id")): line for line in provider.iter_lines(file_id)})
    print(f"batch {remote.id}: {remote.status}, {len(lines)} result line(s) for {len(cases)} request(s)",
          file=sys.stderr)
    return lines


def evaluate(cases: list[Case], lines: dict[str, dict]) -> dict:
    """Agreement of the parsed model grades with the human scores, overall, per question and by confidence."""
    import pandas as pd

    pairs, failures = [], {}
    for case in cases:
        line = lines.get(case.custom_id)
        result = batch.parse_line(line, case.max_points) if line else None
        if result is None or not result.ok:
            code = "missing" if result is None else result.code or "error"
            failures[code] = failures.get(code, 0) + 1
            continue
        out_of_range = result.raw_score is not None and not 0 <= result.raw_score <= case.max_points
        failures["score_out_of_range"] = failures.get("score_out_of_range", 0) + int(out_of_range)
        pairs.append({"question_id": case.question_id, "max_points": case.max_points, "model_score": result.score,
                      "human_score": case.human_score, "confidence": result.confidence})
    frame = pd.DataFrame(pairs, columns=["question_id", "max_points", "model_score", "human_score", "confidence"])
    return {"cases": len(cases), "graded": len(pairs), "not_graded": {k: v for k, v in failures.items() if v},
            **agreement.report(frame), "by_confidence": agreement.by_confidence(frame) if pairs else []}


def render(result: dict) -> str:
    """The figures as text tables."""
    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    out = [f"{result['graded']} of {result['cases']} answers graded by the model; not graded: "
           f"{result['not_graded'] or 'none'}", "",
           f"{'scope':<20} {'n':>5} {'pearson_r':>9} {'qwk':>7} {'mae':>7} {'changed':>8}"]
    rows = [("overall", result["overall"])] + [(q["question_id"], q) for q in result["per_question"]]
    for name, f in rows:
        out.append(f"{name:<20} {f['n']:>5} {fmt(f['pearson_r']):>9} {fmt(f['qwk']):>7} {fmt(f['mae']):>7} "
                   f"{fmt(f['changed_share']):>8}")
    out += ["", "by model confidence (choose min_confidence: answers at or above it are released unreviewed)",
            f"{'band':<14} {'n':>5} {'mae':>7} {'changed':>8} {'qwk':>7} | {'min_conf':>8} {'released':>8} "
            f"{'its mae':>7}"]
    for b in result["by_confidence"]:
        out.append(f"{b['band']:<14} {b['n']:>5} {fmt(b['mae']):>7} {fmt(b['changed_share']):>8} "
                   f"{fmt(b['qwk']):>7} | {b['if_min_confidence']:>8.2f} {fmt(b['auto_released_share']):>8} "
                   f"{fmt(b['auto_released_mae']):>7}")
    return "\n".join(out)


def _provider(args: argparse.Namespace):
    from gradeflow.grading.providers import openai_batch

    if args.base_url:
        return providers.get("openai_batch", sdk_client=openai_batch.client_for_url(
            args.base_url, os.environ.get("OPENAI_API_KEY", "not-needed")))
    return providers.get("openai_batch", conn_id=args.conn_id)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; exit 2 on bad input."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path, help="human-scored answers (see above)")
    parser.add_argument("--model", default="gpt-4.1-mini", help="the model named in each request")
    parser.add_argument("--conn-id", default=OPENAI_CONN_ID, help="Airflow connection of the endpoint")
    parser.add_argument("--base-url", help="an OpenAI-compatible base URL instead of the Airflow connection "
                                           "(key from OPENAI_API_KEY)")
    parser.add_argument("--write-jsonl", type=Path, help="only write the Batch API input JSONL here")
    parser.add_argument("--read-jsonl", type=Path, help="read a Batch API output JSONL instead of calling an API")
    parser.add_argument("--poll-seconds", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    try:
        cases = read_cases(args.csv.read_bytes(), args.model)
    except EvaluationInputError as exc:
        print(f"{args.csv}: {exc}", file=sys.stderr)
        return 2
    if args.write_jsonl:
        args.write_jsonl.write_bytes(input_jsonl(cases))
        print(f"wrote {len(cases)} request(s) to {args.write_jsonl}")
        return 0
    lines = read_output(args.read_jsonl.read_text()) if args.read_jsonl else \
        run_batch(_provider(args), cases, args.poll_seconds)
    result = evaluate(cases, lines)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
