"""Text rules shared by every file GradeFlow reads or writes: what PostgreSQL can store, what a spreadsheet
may open safely.

May import: nothing of gradeflow.
"""

from __future__ import annotations

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
