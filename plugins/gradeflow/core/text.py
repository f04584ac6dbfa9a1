"""Text rules shared by every file GradeFlow reads or writes: what PostgreSQL can store, what a spreadsheet
may open safely.

May import: nothing of gradeflow.
"""

from __future__ import annotations

import re

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def clean_text(value: object) -> bool:
    """Text PostgreSQL can store: a str with no NUL character and no lone surrogate (JSON escapes can carry both)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def spreadsheet_safe(value: object) -> object:
    """A value made safe for a spreadsheet (OWASP CSV injection): text that starts like a formula
    gets a leading single quote. Only CSV exports are changed; the database keeps the raw value."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


# --- Instruction-like content in an answer (a prompt-injection screen) ------------------------------------
# The request passes student text as data, never as instructions; a model may still obey text inside it. An
# answer showing one of these signs is graded as usual, but a model grade above INJECTION_REVIEW_SHARE of the
# question's max_points goes to review as `suspected_injection` (gradeflow.lifecycle.route_doubtful).
INJECTION_REVIEW_SHARE = 0.5
_INJECTION_SIGNS = (
    ("role tag", r"<\s*/?\s*(system|assistant|user|developer|im_start|im_end)\b|\[/?INST\]|<<\s*/?SYS\s*>>"
                 r"|^\s*(system|assistant|developer)\s*:"),
    ("instruction to ignore the task", r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}"
                                       r"\b(instructions?|rubric|prompt|rules|guidelines|criteria|above|previous)\b"),
    ("asks for marks", r"\b(give|award|assign|grant|mark)\b.{0,30}\b(full|maximum|max|all|top|perfect|100\s*%?)"
                       r".{0,20}\b(marks?|points?|score|credit|grade)\b|\bfull\s+(marks?|credit|points?|score)\b"),
    ("addresses the grader", r"\b(you are|act as|as)\s+(now\s+)?(the|a|an)\s+(grader|examiner|assistant|ai)\b"
                             r"|\b(dear|hey)\s+(grader|ai|model|assistant)\b"),
    ("grade-shaped JSON", r"[\"']\s*(score|grade|points|confidence|decisions|met)\s*[\"']\s*:"),
    ("spreadsheet formula", r"\A\s*=|\A\s*@\s*[A-Za-z]|\A\s*[+-]\s*[A-Za-z_]+\s*[|(!]"),
)
# For an ASCII text, literals (lower case) one of which the text must hold for the sign's pattern to match at all:
# the screen skips a pattern none of whose literals is there (most answers hold none), the same verdict at a
# fraction of the regular expressions' cost. Not for other text: IGNORECASE also matches non-ASCII case variants
# (the Kelvin sign for k, the long s for s), which a literal test would miss. None: the pattern always runs.
_INJECTION_HINTS = {
    "role tag": ("<", "[", ":"),
    "instruction to ignore the task": ("ignore", "disregard", "forget", "override", "bypass"),
    "asks for marks": ("give", "award", "assign", "grant", "mark", "full"),
    # (you are|act as|as) (the|a|an) (grader|examiner|assistant|ai), or (dear|hey) (grader|ai|model|assistant):
    # the last word follows a character that \s matches
    "addresses the grader": ("grader", "examiner", "assistant", "model",
                             *(chr(c) + "ai" for c in range(128) if re.fullmatch(r"\s", chr(c)))),
}
_INJECTION_RES = tuple((name, re.compile(pattern, re.IGNORECASE | re.MULTILINE), _INJECTION_HINTS.get(name))
                       for name, pattern in _INJECTION_SIGNS)
MAX_PLAIN_ANSWER_CHARS = 8_000  # far above any short answer or essay of the sample day: flagged as "very long"


def injection_signs(text: object) -> list[str]:
    """The instruction-like signs an answer shows (empty: none): role tags, "ignore the instructions/rubric",
    requests for marks, addressing the grader, grade-shaped JSON, a spreadsheet formula, a very long text."""
    if not isinstance(text, str):
        return []
    folded = text.lower() if text.isascii() else None
    signs = [name for name, pattern, hints in _INJECTION_RES
             if (folded is None or hints is None or any(hint in folded for hint in hints)) and pattern.search(text)]
    if len(text) > MAX_PLAIN_ANSWER_CHARS:
        signs.append("very long")
    return signs
