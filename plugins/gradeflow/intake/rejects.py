"""What a file or row that is not loaded carries: the file, row, field, value and a reason that says why.

May import: nothing of gradeflow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reject:
    """Why one row (or, with row None, the whole file) was not loaded.

    `waits` marks a refusal that can change later (the row's exam or question is not known yet, or
    its exam file was rejected): such rows are read again when the file is re-sent.
    """

    file: str
    row: int | None
    field: str | None
    value: str | None
    reason: str
    waits: bool = False


class FileRejected(ValueError):
    """The file as a whole cannot be read; the message says why."""
