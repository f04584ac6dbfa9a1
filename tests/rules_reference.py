"""Reference semantics of the rule graders (multiple choice, true/false, numeric with tolerance): tests only.

Pure functions. An answer of the wrong shape is not an error: it scores 0 (the student's answer
is wrong, not the file). Scores are always within [0, max_points].

These are the reference semantics. The night grades in the database, with the same rules as SQL
functions (migration 007_scale.sql, `gradeflow_rule_score`), one statement for the whole day;
tests/unit/test_rules.py checks that both give the same score on every case below. To keep them
equal in any database locale, letters are upper-cased in ASCII only and numbers use ASCII digits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_SPLIT = re.compile(r"[\s,;/|]+")
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def choices(text: str) -> frozenset[str]:
    """The option letters in an answer like 'b', 'A,C' or 'a; c' (upper-cased)."""
    return frozenset(part.translate(_ASCII_UPPER) for part in _SPLIT.split(text.strip()) if part)


def grade_multiple_choice(answer: str, key: str | list[str], max_points: float) -> float:
    """Full points when exactly the keyed options are chosen, else 0."""
    expected = frozenset(k.strip().translate(_ASCII_UPPER) for k in (key if isinstance(key, list) else [key]))
    return float(max_points) if choices(answer) == expected else 0.0


def parse_bool(text: str) -> bool | None:
    """true/false, t/f, yes/no, 1/0 (any case); None when it is none of them."""
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def grade_true_false(answer: str, key: bool, max_points: float) -> float:
    """Full points when the answer reads as the keyed truth value."""
    return float(max_points) if parse_bool(answer) is key else 0.0


def parse_number(text: str) -> float | None:
    """A finite number in ASCII digits with '.' as the decimal mark (sign and exponent allowed); else None."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def grade_numeric(answer: str, key: float, tolerance: float, max_points: float) -> float:
    """Full points when |answer - key| <= tolerance (absolute), else 0."""
    value = parse_number(answer)
    if value is None:
        return 0.0
    return float(max_points) if abs(value - float(key)) <= float(tolerance) + 1e-9 else 0.0


def grade(question: Mapping[str, Any], answer: str) -> float:
    """Grade one answer to a rule-graded question row (qtype, answer_key, tolerance, max_points)."""
    qtype, key, points = question["qtype"], question["answer_key"], float(question["max_points"])
    if qtype == "multiple_choice":
        return grade_multiple_choice(answer, key, points)
    if qtype == "true_false":
        return grade_true_false(answer, key, points)
    if qtype == "numeric":
        return grade_numeric(answer, key, float(question.get("tolerance") or 0), points)
    raise ValueError(f"question type {qtype!r} is not graded by rule")
