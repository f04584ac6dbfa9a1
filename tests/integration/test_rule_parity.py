"""The database grades with the same rules as tests/rules_reference.py (moved from tests/unit/test_rules.py:
it needs PostgreSQL, and the unit tier runs without services)."""

import pytest

from tests import rules_reference as rules

# ---------------------------------------------------------------- the database grades with the same rules

NBSP, EM_SPACE, IDEO_SPACE = "\u00a0", "\u2003", "\u3000"
# (question type, answer, key, tolerance): the cases above plus the tricky ones where SQL and Python
# could part ways (Unicode spaces, locale-dependent case, number syntax, overflow, underflow).
PARITY_CASES = [
    *[("multiple_choice", a, k, 0) for a, k, _ in [
        ("B", "B", 0), ("b", "B", 0), (" B ", "B", 0), ("C", "B", 0), ("", "B", 0), ("A,C", ["A", "C"], 0),
        ("c; a", ["A", "C"], 0), ("A", ["A", "C"], 0), ("A,B,C", ["A", "C"], 0), ("B,B", "B", 0), ("BC", "B", 0)]],
    ("multiple_choice", f"A{NBSP}C", ["A", "C"], 0), ("multiple_choice", f"{IDEO_SPACE}b{EM_SPACE}", "B", 0),
    ("multiple_choice", "a|c/ ;", ["C", "A"], 0), ("multiple_choice", "\tA\n,\r\nC\x0b", ["A", "C"], 0),
    ("multiple_choice", "é", "É", 0), ("multiple_choice", "ß", "SS", 0), ("multiple_choice", "b", [" b "], 0),
    ("multiple_choice", "A,C", ["A", "C", "A"], 0), ("multiple_choice", "A\x1cC", ["A", "C"], 0),
    *[("true_false", a, k, 0) for a, k in [
        ("true", True), ("T", True), ("yes", True), ("1", True), ("false", True), ("no", False), ("0", False),
        ("maybe", False), ("", False), ("", True), (f"{NBSP}TRUE{IDEO_SPACE}", True), ("Yes ", True),
        ("y", False), ("N", False), ("true.", True), ("ｔｒｕｅ", True), ("İ", True)]],
    *[("numeric", a, k, t) for a, k, t in [
        ("46", 46, 0), ("46.0", 46, 0), ("45.9", 46, 0), ("45.9", 46, 0.1), ("46.1", 46, 0.1), ("46.11", 46, 0.1),
        ("-2.5", -2.5, 0), ("1e3", 1000, 0), ("forty-six", 46, 0), ("", 46, 0), ("nan", 46, 1e9), ("inf", 46, 1e9),
        ("9.81", 9.8, 0.05), ("0.30000000000000004", 0.3, 0), ("+.5", 0.5, 0), ("5.", 5, 0), (".", 0, 1),
        ("-", 0, 1), ("e5", 0, 1), ("1_000", 1000, 0), ("４６", 46, 0), ("1e-400", 0, 0), ("-1e-400", 0, 0),
        ("1e400", 46, 1e9), ("1E+2", 100, 0), (f"{NBSP}7{IDEO_SPACE}", 7, 0), ("1e308", 1e308, 0),
        ("-1e308", 1e308, 0), ("46 cm", 46, 0), ("4,6", 4.6, 0), ("0x10", 16, 0), ("46.000000001", 46, 0),
        ("46.0000000011", 46, 0)]],
]


@pytest.fixture(scope="module")
def night_conn(module_database):
    """The night's connection for northfield (worker role, bound to it), as grade_by_rule runs the function: one
    database and connection for the module, since a case only calls a pure function (its own database per case
    cost ~0.17 s each on a quiet machine, 12 s for the 70)."""
    from gradeflow.core import db

    with db.connect(institution="northfield") as connection:
        yield connection


@pytest.fixture
def rule_conn(night_conn):
    """night_conn inside a transaction rolled back after the case, whatever it did or raised."""
    with night_conn.transaction(force_rollback=True):
        yield night_conn


def _python_score(qtype, answer, key, tolerance, points=2.0):
    return rules.grade({"qtype": qtype, "answer_key": key, "tolerance": tolerance, "max_points": points}, answer)


@pytest.mark.parametrize(("qtype", "answer", "key", "tolerance"), PARITY_CASES)
def test_sql_rules_score_like_the_python_rules(rule_conn, qtype, answer, key, tolerance):
    """gradeflow_rule_score (what grade_by_rule runs) gives the same score as tests/rules_reference.py."""
    from psycopg.types.json import Jsonb

    sql_score = rule_conn.execute("SELECT gradeflow_rule_score(%s, %s, %s, %s::numeric, %s::numeric)::float8",
                             (qtype, answer, Jsonb(key), tolerance, 2)).fetchone()[0]
    assert sql_score == _python_score(qtype, answer, key, tolerance)


def test_parity_cases_cover_both_outcomes():
    """The parity table is not vacuous: it has full and zero scores for every rule type."""
    for qtype in rules_types():
        scores = {_python_score(t, a, k, tol) for t, a, k, tol in PARITY_CASES if t == qtype}
        assert scores == {0.0, 2.0}, qtype


def rules_types():
    return ("multiple_choice", "true_false", "numeric")
