"""Evaluate a model against human graders before trusting it: `python -m gradeflow.admin.evaluate answers.csv`.

The CSV holds human-scored answers, one per row (docs/evaluate.md has the format; headers are
case-insensitive): `question`, `reference`, `max_points`, `answer`, `human_score`, and `rubric` (text) or
`rubric_items` (a JSON list of {id, description, points}, as in an exam file); optional: `question_id`,
`question_type` = short_answer | essay, `human_criteria` (rubric items the human ticked: ids separated by `;`,
`-` for none). Every row goes through the very prompt and Batch API path the night uses
(`gradeflow.grading.batch.build_request`, one JSONL input file, the openai_batch provider's upload, create and
polling, `batch.parse_line` on the output and error files) against whatever OpenAI-compatible endpoint you name,
or offline:

    python -m gradeflow.admin.evaluate answers.csv                         # the Airflow connection gradeflow_openai
    python -m gradeflow.admin.evaluate answers.csv --base-url http://host:8000/v1 --model my-model
    python -m gradeflow.admin.evaluate answers.csv --write-jsonl batch-input.jsonl    # then run it anywhere
    python -m gradeflow.admin.evaluate answers.csv --read-jsonl batch-output.jsonl    # e.g. from vLLM's run_batch

It prints (and with --json writes) n, Pearson r, quadratic weighted kappa, MAE and the share of
model grades a human would change, overall and per question; for rubric items the agreement per criterion
(model decision against the human tick, with a 95% interval and Cohen's kappa); the same by model-confidence
band; and the threshold table (gradeflow.release.calibration): for each min_confidence, the review share and
the accuracy of what would be released unreviewed (within --tolerance-points of the human score) with its 95%
interval, and the recommended threshold for --target-accuracy. Bad input gets one line per problem naming the
file, row and field (exit 2), never a traceback.
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

from gradeflow.core.config import FREE_TEXT_TYPES, OPENAI_CONN_ID, Institution
from gradeflow.core.rubric import score_from_decisions
from gradeflow.grading import batch, providers
from gradeflow.intake import exam_contract, review_files
from gradeflow.intake.contract import answer_sha256
from gradeflow.release import agreement, calibration

REQUIRED = ("question", "reference", "max_points", "answer", "human_score")
OPTIONAL = ("rubric", "rubric_items", "question_id", "question_type", "human_criteria")
MAX_ERRORS = 20  # problems listed before the rest are only counted


class EvaluationInputError(ValueError):
    """The CSV cannot be used; each line of the message names the row and the field."""


@dataclass(frozen=True)
class Case:
    """One human-scored answer and the request that grades it."""

    custom_id: str
    question_id: str
    max_points: float
    human_score: float
    request: dict
    items: tuple[dict, ...] | None = None  # rubric items, None for a text rubric
    answer_text: str = ""
    human_decisions: tuple[dict, ...] | None = None  # the human's ticks, when given


def _number(row: dict, field: str, number: int) -> float:
    try:
        value = float(str(row.get(field, "")).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise EvaluationInputError(f"row {number}, field {field!r}: not a finite number: {row.get(field)!r}")
    return value


def decode(data: bytes) -> str:
    """The file as text (UTF-8, with or without a byte-order mark), or an error naming the line and byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise EvaluationInputError(f"line {line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                                   "save the file as UTF-8") from None


def _header(fieldnames: list[str] | None) -> dict[str, str]:
    """Normalised column name (trimmed, lower case) -> the name as written; refuses missing and doubled columns."""
    names: dict[str, str] = {}
    for name in fieldnames or []:
        key = (name or "").strip().lower()
        if key in names:
            raise EvaluationInputError(f"header: column {key!r} appears twice ({names[key]!r}, {name!r})")
        names[key] = name
    missing = [c for c in REQUIRED if c not in names]
    if "rubric" not in names and "rubric_items" not in names:
        missing.append("rubric (or rubric_items)")
    if missing:
        raise EvaluationInputError(f"header: missing column(s) {missing}; expected {list(REQUIRED)} and rubric or "
                                   f"rubric_items (optional: {list(OPTIONAL[2:])}); see docs/evaluate.md")
    return names


def _items(row: dict, number: int) -> tuple[dict, ...] | None:
    """The row's rubric items (a JSON list checked as an exam file's), or None for a text rubric."""
    text = (row.get("rubric_items") or "").strip()
    if not text:
        return None
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EvaluationInputError(f"row {number}, field 'rubric_items': not JSON ({exc.msg} at character "
                                   f"{exc.pos}); expected a list of {{id, description, points}}") from None
    if not isinstance(items, list):
        raise EvaluationInputError(f"row {number}, field 'rubric_items': expected a JSON list of "
                                   "{id, description, points}")
    checked, problems = exam_contract.check_rubric_items(items, _number(row, "max_points", number), "rubric_items")
    if problems:
        field, reason = problems[0]
        raise EvaluationInputError(f"row {number}, field {field!r}: {reason}")
    return tuple(checked)


def _human(row: dict, number: int, items: tuple[dict, ...] | None, max_points: float):
    """(human score, the human's ticks or None); the score may come from the ticks, and must agree with them."""
    ticks = (row.get("human_criteria") or "").strip()
    decisions = None
    if ticks:
        decisions, problem = review_files.ticks(ticks, {"rubric_items": list(items or [])})
        if problem:
            raise EvaluationInputError(f"row {number}, field 'human_criteria': {problem}")
    given = (row.get("human_score") or "").strip()
    if decisions is not None:
        computed = score_from_decisions(list(items), {d["id"]: d["met"] for d in decisions}, max_points)[0]
        if given and abs(_number(row, "human_score", number) - computed) > 1e-9:
            raise EvaluationInputError(f"row {number}, field 'human_score': {given} differs from {computed:g}, the "
                                       "score of the ticked human_criteria (give one, or both agreeing)")
        return computed, tuple(decisions)
    human = _number(row, "human_score", number)
    if not 0 <= human <= max_points:
        raise EvaluationInputError(f"row {number}, field 'human_score': {human:g} is outside [0, max_points = "
                                   f"{max_points:g}]")
    return human, None


def _case(row: dict, number: int, model: str) -> Case:
    max_points = _number(row, "max_points", number)
    if max_points <= 0:
        raise EvaluationInputError(f"row {number}, field 'max_points': must be > 0, got {max_points:g}")
    qtype = (row.get("question_type") or "short_answer").strip().lower()
    if qtype not in FREE_TEXT_TYPES:
        raise EvaluationInputError(f"row {number}, field 'question_type': one of {sorted(FREE_TEXT_TYPES)}, "
                                   f"got {qtype!r}")
    items = _items(row, number)
    rubric = exam_contract.render_rubric(list(items)) if items else (row.get("rubric") or "").strip()
    if not rubric:
        raise EvaluationInputError(f"row {number}, field 'rubric': required (a text rubric, or rubric_items)")
    human, ticks = _human(row, number, items, max_points)
    question_id = (row.get("question_id") or "").strip() or \
        "q-" + hashlib.sha256((row.get("question") or "").encode()).hexdigest()[:8]
    question = {"qtype": qtype, "prompt": row.get("question") or "", "rubric": rubric,
                "reference_answer": row.get("reference") or "", "max_points": max_points,
                "rubric_items": list(items) if items else None}
    answer = row.get("answer") or ""
    cid = batch.custom_id("evaluate", "row", str(number), question_id, answer_sha256(answer))
    return Case(cid, question_id, max_points, human, batch.build_request(cid, model, question, answer),
                items, answer, ticks)


def read_cases(data: bytes, model: str) -> list[Case]:
    """The CSV's rows as grading requests, built exactly as the night builds them; every bad row is named."""
    reader = csv.DictReader(io.StringIO(decode(data), newline=""))
    names = _header(reader.fieldnames)
    cases, errors = [], []
    try:
        for number, raw in enumerate(reader, start=1):
            row = {key: raw.get(name) for key, name in names.items()}
            try:
                cases.append(_case(row, number, model))
            except EvaluationInputError as exc:
                errors.append(str(exc))
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: not readable as CSV: {exc}")
    if errors:
        more = f"\n... and {len(errors) - MAX_ERRORS} more bad row(s)" if len(errors) > MAX_ERRORS else ""
        raise EvaluationInputError("\n".join(errors[:MAX_ERRORS]) + more)
    if not cases:
        raise EvaluationInputError("no rows: the file has a header but no answers")
    return cases


def input_jsonl(cases: list[Case]) -> bytes:
    """The Batch API input file (one request per line)."""
    return "".join(json.dumps(c.request, ensure_ascii=False) + "\n" for c in cases).encode()


def read_output(text: str, problems: list[str] | None = None) -> dict[str, dict]:
    """Output (or error) file lines keyed by custom_id (never by position). A line that is not a JSON object
    with a custom_id is named in `problems` (line number and why) and skipped: its request counts as missing."""
    lines = {}
    for number, raw in enumerate(text.split("\n"), start=1):  # at "\n" only: JSON allows U+2028 raw
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            if problems is not None:
                problems.append(f"line {number}: not JSON ({exc.msg} at character {exc.pos}); skipped")
            continue
        if not isinstance(line, dict) or not line.get("custom_id"):
            if problems is not None:
                problems.append(f"line {number}: not a Batch API result line (no custom_id); skipped")
            continue
        lines[str(line["custom_id"])] = line
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


def evaluate(cases: list[Case], lines: dict[str, dict], tolerance_points: float = Institution.tolerance_points,
             target_accuracy: float = Institution.target_accuracy) -> dict:
    """Agreement of the parsed model grades with the human scores: overall, per question, per rubric criterion,
    by confidence band, and the threshold table.

    `not_graded` counts the answers the model gave no usable grade (by reason); `out_of_range` counts graded answers
    whose raw model score was outside [0, max_points] (clamped, and in the figures: the night sends them to review);
    `evidence_not_found` those whose rubric-item evidence quote is not in the answer (likewise).
    """
    import pandas as pd

    pairs, failures, criteria_rows = [], {}, []
    out_of_range = evidence_missing = 0
    for case in cases:
        line = lines.get(case.custom_id)
        result = batch.parse_line(line, case.max_points, list(case.items) if case.items else None,
                                  case.answer_text if case.items else None) if line else None
        if result is None or not result.ok:
            code = "missing" if result is None else result.code or "error"
            failures[code] = failures.get(code, 0) + 1
            continue
        out_of_range += int(result.raw_score is not None and not 0 <= result.raw_score <= case.max_points)
        evidence_missing += int(result.evidence_ok is False)
        pairs.append({"question_id": case.question_id, "max_points": case.max_points, "model_score": result.score,
                      "human_score": case.human_score, "confidence": result.confidence})
        if case.human_decisions is not None and result.decisions:
            criteria_rows.append({"question_id": case.question_id, "model_decisions": list(result.decisions),
                                  "human_decisions": list(case.human_decisions)})
    frame = pd.DataFrame(pairs, columns=["question_id", "max_points", "model_score", "human_score", "confidence"])
    table = calibration.threshold_table(calibration.pairs_from_rows(pairs), tolerance_points, target_accuracy)
    return {"cases": len(cases), "graded": len(pairs), "not_graded": dict(sorted(failures.items())),
            "out_of_range": out_of_range, "evidence_not_found": evidence_missing,
            **agreement.report(frame), "per_criterion": agreement.criteria_report(criteria_rows),
            "by_confidence": agreement.by_confidence(frame) if pairs else [], "thresholds": table}


def render(result: dict, current_min_confidence: float | None = None) -> str:
    """The figures as text tables."""
    def fmt(v):
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    out = [f"{result['graded']} of {result['cases']} answers graded by the model; not graded: "
           f"{result['not_graded'] or 'none'}",
           f"graded, but the raw score was out of range (clamped; the night sends these to review): "
           f"{result.get('out_of_range', 0)}; evidence quote not in the answer: {result.get('evidence_not_found', 0)}",
           "", f"{'scope':<20} {'n':>5} {'pearson_r':>9} {'qwk':>7} {'mae':>7} {'changed':>8}"]
    rows = [("overall", result["overall"])] + [(q["question_id"], q) for q in result["per_question"]]
    for name, f in rows:
        out.append(f"{name:<20} {f['n']:>5} {fmt(f['pearson_r']):>9} {fmt(f['qwk']):>7} {fmt(f['mae']):>7} "
                   f"{fmt(f['changed_share']):>8}")
    if result.get("per_criterion"):
        out += ["", "per rubric criterion (the model's decision against the human's tick)",
                f"{'question':<20} {'criterion':<12} {'n':>5} {'agree':>7} {'95% interval':>15} {'kappa':>7}"]
        for c in result["per_criterion"]:
            out.append(f"{c['question_id']:<20} {c['criterion']:<12} {c['n']:>5} {fmt(c['agreement']):>7} "
                       f"{'[' + fmt(c['ci_low']) + ', ' + fmt(c['ci_high']) + ']':>15} {fmt(c['kappa']):>7}")
    out += ["", "by model confidence (choose min_confidence: answers at or above it are released unreviewed)",
            f"{'band':<14} {'n':>5} {'mae':>7} {'changed':>8} {'qwk':>7} | {'min_conf':>8} {'released':>8} "
            f"{'its mae':>7}"]
    for b in result["by_confidence"]:
        out.append(f"{b['band']:<14} {b['n']:>5} {fmt(b['mae']):>7} {fmt(b['changed_share']):>8} "
                   f"{fmt(b['qwk']):>7} | {b['if_min_confidence']:>8.2f} {fmt(b['auto_released_share']):>8} "
                   f"{fmt(b['auto_released_mae']):>7}")
    if result.get("thresholds"):
        out += ["", calibration.render(result["thresholds"], current_min_confidence)]
    return "\n".join(out)


def _provider(args: argparse.Namespace):
    from gradeflow.grading.providers import openai_batch

    if args.base_url:
        return providers.get("openai_batch", sdk_client=openai_batch.client_for_url(
            args.base_url, os.environ.get("OPENAI_API_KEY", "not-needed")))
    return providers.get("openai_batch", conn_id=args.conn_id)


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; exit 2 on bad input (one line per problem, naming the file, row and field)."""
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
    parser.add_argument("--tolerance-points", type=float, default=Institution.tolerance_points,
                        help="a model score within this many points of the human score counts as accurate "
                             "(an institution's tolerance_points; default %(default)s)")
    parser.add_argument("--target-accuracy", type=float, default=Institution.target_accuracy,
                        help="the accuracy the threshold table recommends for (an institution's target_accuracy; "
                             "default %(default)s)")
    parser.add_argument("--min-confidence", type=float, default=Institution.min_confidence,
                        help="the current min_confidence, marked in the threshold table (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        cases = read_cases(_read(args.csv), args.model)
    except EvaluationInputError as exc:
        print("\n".join(f"{args.csv}: {line}" for line in str(exc).splitlines()), file=sys.stderr)
        return 2
    if args.write_jsonl:
        args.write_jsonl.write_bytes(input_jsonl(cases))
        print(f"wrote {len(cases)} request(s) to {args.write_jsonl}")
        return 0
    if args.read_jsonl:
        problems: list[str] = []
        try:
            lines = read_output(decode(_read(args.read_jsonl)), problems)
        except EvaluationInputError as exc:
            print(f"{args.read_jsonl}: {exc}", file=sys.stderr)
            return 2
        for problem in problems:
            print(f"{args.read_jsonl}: {problem}", file=sys.stderr)
    else:
        lines = run_batch(_provider(args), cases, args.poll_seconds)
    result = evaluate(cases, lines, args.tolerance_points, args.target_accuracy)
    print(render(result, args.min_confidence))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"{path}: cannot be read: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
