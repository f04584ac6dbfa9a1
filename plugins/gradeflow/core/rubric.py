"""Rubric items: the score from per-criterion decisions, and the evidence check (docs/file-contract.md).

Pure functions shared by model grading (gradeflow.grading.batch) and reviewers' ticks
(gradeflow.intake.review_files). May import: nothing of gradeflow.
"""

from __future__ import annotations

import re
import unicodedata


def score_from_decisions(items: list[dict], met: dict[str, bool], max_points: float) -> tuple[float, float]:
    """(score clamped to [0, max_points], unclamped sum) from the decisions of each rubric item.

    Points of met items add up from 0; a rubric of deductions only (every item negative) starts from
    max_points instead. The model's own total is never used.
    """
    start = float(max_points) if all(float(c["points"]) < 0 for c in items) else 0.0
    raw = start + sum(float(c["points"]) for c in items if met.get(c["id"]))
    return min(max(raw, 0.0), float(max_points)), raw


def normalise_text(text: str) -> str:
    """Text compared for evidence: Unicode NFC, runs of whitespace as one space, case-folded, trimmed."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip().casefold()


def evidence_found(answer_text: str, quote: str) -> bool:
    """Whether a non-empty evidence quote occurs in the answer (after whitespace normalisation)."""
    needle = normalise_text(quote).strip(" \"'“”‘’")
    return bool(needle) and needle in normalise_text(answer_text)
