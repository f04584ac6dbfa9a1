import pytest

from tests import rules_reference as rules


@pytest.mark.parametrize(("answer", "key", "expected"), [
    ("B", "B", 2.0), ("b", "B", 2.0), (" B ", "B", 2.0), ("C", "B", 0.0), ("", "B", 0.0),
    ("A,C", ["A", "C"], 2.0), ("c; a", ["A", "C"], 2.0), ("A", ["A", "C"], 0.0), ("A,B,C", ["A", "C"], 0.0),
    ("B,B", "B", 2.0), ("BC", "B", 0.0),
])
def test_multiple_choice(answer, key, expected):
    assert rules.grade_multiple_choice(answer, key, 2) == expected


@pytest.mark.parametrize(("answer", "key", "expected"), [
    ("true", True, 1.0), ("T", True, 1.0), ("yes", True, 1.0), ("1", True, 1.0), ("false", True, 0.0),
    ("no", False, 1.0), ("0", False, 1.0), ("maybe", False, 0.0), ("", False, 0.0), ("", True, 0.0),
])
def test_true_false(answer, key, expected):
    assert rules.grade_true_false(answer, key, 1) == expected


@pytest.mark.parametrize(("answer", "key", "tol", "expected"), [
    ("46", 46, 0, 3.0), ("46.0", 46, 0, 3.0), ("45.9", 46, 0, 0.0), ("45.9", 46, 0.1, 3.0),
    ("46.1", 46, 0.1, 3.0), ("46.11", 46, 0.1, 0.0), ("-2.5", -2.5, 0, 3.0), ("1e3", 1000, 0, 3.0),
    ("forty-six", 46, 0, 0.0), ("", 46, 0, 0.0), ("nan", 46, 1e9, 0.0), ("inf", 46, 1e9, 0.0),
    ("9.81", 9.8, 0.05, 3.0), ("0.30000000000000004", 0.3, 0, 3.0),
])
def test_numeric(answer, key, tol, expected):
    assert rules.grade_numeric(answer, key, tol, 3) == expected


def test_grade_dispatches_and_refuses_free_text():
    assert rules.grade({"qtype": "numeric", "answer_key": 2, "tolerance": None, "max_points": 1}, "2") == 1.0
    with pytest.raises(ValueError, match="not graded by rule"):
        rules.grade({"qtype": "essay", "answer_key": None, "max_points": 5}, "text")


def test_numbers_are_ascii_only():
    assert rules.parse_number("1_000") is None
    assert rules.parse_number("４６") is None
    assert rules.parse_number(" +.5 ") == 0.5
    assert rules.parse_number("1e-400") == 0.0
    assert rules.parse_number("1e400") is None
