"""Exam definitions (`exams/<exam_id>.json`) under the file contract (docs/file-contract.md).

Pure functions, no I/O. Every value of an exam is checked for type, finiteness, range and
storability (no NUL, no broken Unicode, no NaN/Infinity, no huge numbers) before the database,
and a problem rejects the whole file with the path of the field (an exam cannot be half-known).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from gradeflow.core.config import FREE_TEXT_TYPES, QUESTION_TYPES, RULE_TYPES
from gradeflow.core.text import clean_text
from gradeflow.intake.rejects import Reject

ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_POINTS = 1_000            # max_points: 0 < x <= MAX_POINTS
MAX_NUMBER = 1e15             # answer_key and tolerance of numeric questions: |x| <= MAX_NUMBER
MAX_TEXT_CHARS = 20_000       # title, prompt, rubric, reference answer
MAX_OPTION_CHARS = 64
MAX_QUESTIONS = 1_000
MAX_DEPTH = 32                # nesting of the JSON document
MAX_CRITERIA = 50             # rubric items of one question
MAX_CRITERION_CHARS = 2_000   # a rubric item's description



@dataclass
class ExamDefinition:
    """A validated exam: id, title and its questions as dicts ready for the questions table."""

    exam_id: str
    title: str
    questions: list[dict] = field(default_factory=list)


Problems = list[tuple[str, str]]


def _unstorable(value: object, path: str, problems: Problems, depth: int = 0) -> None:
    """Values no column can hold, wherever they are: NaN/Infinity, NUL, broken Unicode, huge numbers."""
    if depth > MAX_DEPTH:
        problems.append((path, f"nested deeper than {MAX_DEPTH} levels"))
    elif isinstance(value, float) and not math.isfinite(value):
        problems.append((path, f"{value} is not a finite number"))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        problems.append((path, f"number too large (more than {MAX_NUMBER:.0e} in size)"))
    elif isinstance(value, str) and not clean_text(value):
        problems.append((path, "must be text without NUL characters or broken Unicode"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if not clean_text(key):
                problems.append((path, "has a key with a NUL character or broken Unicode"))
            else:
                _unstorable(item, f"{path}.{key}" if path else key, problems, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _unstorable(item, f"{path}[{i}]", problems, depth + 1)


def _number(q: dict, name: str, where: str, problems: Problems, low: float, high: float,
            low_open: bool = False) -> None:
    value = q.get(name)
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok and (value < low or value > high or (low_open and value == low)):
        ok = False
    if not ok:
        bound = ">" if low_open else ">="
        problems.append((f"{where}.{name}", f"must be a finite number {bound} {low:g} and <= {high:g}"))


def _text_field(q: dict, name: str, where: str, problems: Problems, required: bool = False,
                limit: int = MAX_TEXT_CHARS) -> None:
    value = q.get(name)
    if value is None:
        if required:
            problems.append((f"{where}.{name}", "required"))
        return
    if not isinstance(value, str):
        problems.append((f"{where}.{name}", f"must be text, got {type(value).__name__}"))
    elif required and not value.strip():
        problems.append((f"{where}.{name}", "required, is empty"))
    elif len(value) > limit:
        problems.append((f"{where}.{name}", f"longer than {limit} characters"))


def render_rubric(items: list[dict]) -> str:
    """A rubric-item list as text (the `rubric` column, packets, prompts): one `id (+p): description` a line."""
    return "\n".join(f"{c['id']} ({c['points']:+g}): {c['description']}" for c in items)


def _check_rubric_items(q: dict, where: str, problems: Problems) -> list[dict] | None:
    """A rubric given as criteria `{id, description, points}`: checked item by item, or None if invalid."""
    items = q["rubric"]
    if not items or len(items) > MAX_CRITERIA:
        problems.append((f"{where}.rubric", f"a rubric given as a list must hold 1 to {MAX_CRITERIA} criteria "
                                            "{id, description, points}"))
        return None
    max_points = q.get("max_points")
    found, seen, before = [], set(), len(problems)
    for i, item in enumerate(items):
        at = f"{where}.rubric[{i}]"
        if not isinstance(item, dict):
            problems.append((at, "a criterion must be an object {id, description, points}"))
            continue
        extra = sorted(set(item) - {"id", "description", "points"})
        if extra:
            problems.append((at, f"unknown key(s) {extra}: a criterion has only id, description, points"))
        cid = item.get("id")
        if not isinstance(cid, str) or not ID_RE.match(cid):
            problems.append((f"{at}.id", "required, [A-Za-z0-9._-]{1,64}"))
        elif cid in seen:
            problems.append((f"{at}.id", f"duplicate criterion id {cid!r}"))
        seen.add(str(cid))
        _text_field(item, "description", at, problems, required=True, limit=MAX_CRITERION_CHARS)
        points = item.get("points")
        bound = max_points if isinstance(max_points, int | float) and not isinstance(max_points, bool) else MAX_POINTS
        if (isinstance(points, bool) or not isinstance(points, int | float) or not math.isfinite(points)
                or points == 0 or abs(points) > bound):
            problems.append((f"{at}.points", f"must be a non-zero number between -{bound:g} and {bound:g} "
                                             "(negative: a deduction)"))
        found.append({"id": cid, "description": item.get("description"), "points": points})
    return found if len(problems) == before else None


def check_rubric_items(items: list, max_points: float, where: str = "rubric") -> tuple[list[dict] | None, Problems]:
    """Rubric items checked as in an exam file (for gradeflow.admin.evaluate): (items, []) or (None, problems),
    each problem a (field path, reason) pair."""
    problems: Problems = []
    found = _check_rubric_items({"rubric": items, "max_points": max_points}, "", problems)
    return found, [(f"{where}{path.removeprefix('.rubric')}", reason) for path, reason in problems]


def _letters(value: object) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(k, str) and k.strip() and len(k) <= MAX_OPTION_CHARS for k in items)


def _check_answer_key(qtype: str, q: dict, where: str, problems: Problems) -> None:
    key = q.get("answer_key")
    if qtype == "multiple_choice":
        if not _letters(key):
            problems.append((f"{where}.answer_key", "must be an option letter or a list of letters"))
            return
        options = q.get("options")
        letters = key if isinstance(key, list) else [key]
        if options is not None and (not isinstance(options, list) or not _letters(options)):
            problems.append((f"{where}.options", "must be a non-empty list of option letters"))
        elif options is not None and not set(letters) <= set(options):
            problems.append((f"{where}.answer_key", f"{key!r} is not among options {options!r}"))
    elif qtype == "true_false" and not isinstance(key, bool):
        problems.append((f"{where}.answer_key", "must be true or false"))
    elif qtype == "numeric":
        _number(q, "answer_key", where, problems, -MAX_NUMBER, MAX_NUMBER)
        if q.get("tolerance") is not None:
            _number(q, "tolerance", where, problems, 0, MAX_NUMBER)


def _check_question(index: int, q: object, seen: set[str], problems: Problems) -> dict | None:
    where = f"questions[{index}]"
    if not isinstance(q, dict):
        problems.append((where, "must be an object"))
        return None
    qid = q.get("question_id")
    if not isinstance(qid, str) or not ID_RE.match(qid):
        problems.append((f"{where}.question_id", "required, [A-Za-z0-9._-]{1,64}"))
    elif qid in seen:
        problems.append((f"{where}.question_id", f"duplicate question_id {qid!r}"))
    seen.add(str(qid))
    qtype = q.get("type")
    if not isinstance(qtype, str) or qtype not in QUESTION_TYPES:
        problems.append((f"{where}.type", f"must be one of {sorted(QUESTION_TYPES)}"))
        return None
    _number(q, "max_points", where, problems, 0, MAX_POINTS, low_open=True)
    if qtype in RULE_TYPES:
        _check_answer_key(qtype, q, where, problems)
    elif q.get("options") is not None and not (isinstance(q["options"], list) and _letters(q["options"])):
        problems.append((f"{where}.options", "must be a non-empty list of option letters"))
    _text_field(q, "prompt", where, problems)
    items = None
    if isinstance(q.get("rubric"), list) and qtype in FREE_TEXT_TYPES:
        items = _check_rubric_items(q, where, problems)
    else:
        _text_field(q, "rubric", where, problems, required=qtype in FREE_TEXT_TYPES)
    _text_field(q, "reference_answer", where, problems, required=qtype in FREE_TEXT_TYPES)
    return {
        "question_id": qid, "position": index + 1, "qtype": qtype, "max_points": q.get("max_points"),
        "prompt": q.get("prompt") or "", "options": q.get("options"),
        "answer_key": q.get("answer_key") if qtype in RULE_TYPES else None,
        "tolerance": (q.get("tolerance") or 0) if qtype == "numeric" else 0,
        "rubric": render_rubric(items) if items else q.get("rubric"), "rubric_items": items,
        "reference_answer": q.get("reference_answer"),
    }


def _load(data: bytes) -> tuple[object, str | None]:
    try:
        return json.loads(data.decode("utf-8-sig")), None  # a UTF-8 byte order mark is accepted
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not a UTF-8 JSON document: {exc}"
    except (ValueError, RecursionError) as exc:  # e.g. an integer of thousands of digits, deep nesting
        return None, f"not a readable JSON document: {type(exc).__name__}: {str(exc)[:200]}"


def parse_exam(file_name: str, data: bytes) -> tuple[ExamDefinition | None, list]:
    """Validate an exam definition. Any problem rejects the whole exam (it cannot be half-known).

    An exam file may only define the exam it is named after: `exams/<exam_id>.json`.
    """
    if not data:
        return None, [Reject(file_name, None, None, None, "the exam file is empty (0 bytes)")]
    doc, error = _load(data)
    if error:
        return None, [Reject(file_name, None, None, None, error)]
    if not isinstance(doc, dict):
        return None, [Reject(file_name, None, None, None, "the exam definition must be a JSON object")]
    problems: Problems = []
    _unstorable(doc, "", problems)
    exam_id = doc.get("exam_id")
    named = PurePosixPath(file_name).stem
    if not isinstance(exam_id, str) or not ID_RE.match(exam_id):
        problems.append(("exam_id", "required, [A-Za-z0-9._-]{1,64}"))
    elif exam_id != named:
        problems.append(("exam_id", f"{exam_id!r} does not match the file name {file_name!r}: an exam file may "
                                    f"only define the exam it is named after (exams/{exam_id}.json)"))
    _text_field(doc, "title", "", problems, limit=500)
    questions = doc.get("questions")
    if not isinstance(questions, list) or not questions or len(questions) > MAX_QUESTIONS:
        problems.append(("questions", f"required, a non-empty list of at most {MAX_QUESTIONS}"))
        questions = []
    seen: set[str] = set()
    parsed = [_check_question(i, q, seen, problems) for i, q in enumerate(questions)]
    if problems:
        first: dict[str, str] = {}  # one problem per field path: the first found is the most specific
        for path, reason in problems:
            first.setdefault(path.lstrip("."), reason)
        return None, [Reject(file_name, None, path, None, reason) for path, reason in first.items()]
    title = doc.get("title") or exam_id
    return ExamDefinition(exam_id, title, [q for q in parsed if q is not None]), []
