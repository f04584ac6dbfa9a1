"""Test helper: the column-wise contract (gradeflow.intake.columns) gathered into one result, as the per-row
reference (gradeflow.intake.contract.validate_submissions) returns it, so the two can be compared."""

from __future__ import annotations

from datetime import UTC

from gradeflow.intake.columns import validate_chunks
from gradeflow.intake.contract import SUBMISSION_COLUMNS, AnswerRow


def validate_all(file_name: str, data: bytes, questions: dict[str, set[str]],
                 rejected_exams: dict[str, str] | None = None, size: int = 50_000):
    """validate_chunks gathered as contract.validate_submissions returns it (rows in file order)."""
    good: list[AnswerRow] = []
    rejects = []
    for chunk in validate_chunks(file_name, data, questions, rejected_exams, size):
        good += [AnswerRow(r["row_number"], *(r[c] for c in SUBMISSION_COLUMNS[:5]),
                           r["submitted_at"].astimezone(UTC)) for r in chunk.good.to_pylist()]
        rejects += chunk.rejects
    good.sort(key=lambda r: r.row)
    rejects.sort(key=lambda r: r.row or 0)
    return good, rejects
