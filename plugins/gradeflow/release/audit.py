"""The measured accuracy of model grades released without a human: the audit sample's figures.

Every night a random sample of the model grades that are released unreviewed goes blind into the review packet
(gradeflow.lifecycle.draw_audit_sample; docs/review-round-trip.md, "The audit sample"). When reviewers score those
items, each gives one (model score, human score) pair of an unreviewed grade. From all of the institution's
audits to date, per question and overall:

* `n`: audited items scored by a reviewer (one per distinct answer: identical answers are one item);
* `within_tolerance`: the share whose model score is within the institution's `tolerance_points` of the human
  score, with its 95% Wilson interval (`within_tolerance_ci95`; gradeflow.core.intervals.wilson);
* `mae`: the mean absolute difference in points, with its 95% percentile-bootstrap interval (`mae_ci95`;
  gradeflow.core.intervals.bootstrap_mean).

Work routed to review (low confidence, out of range, ...) is reported apart with the same figures (`routed`):
it is the doubtful part by construction, so it says nothing of what is released unreviewed. Pure figures from
pairs (`figures`, `report_from_pairs`), the pairs from include/sql/release/ (`audit_report`). May import:
gradeflow.core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from gradeflow.core import intervals

if TYPE_CHECKING:
    import psycopg

    from gradeflow.core.config import Institution

_EPS = 1e-9  # a difference of exactly tolerance_points is within it (points are decimals: 0.5 is not 0.5000001)
POPULATIONS = (("audit", "unreviewed_model"), ("routed", "routed"))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _interval(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [round(ci[0], 4), round(ci[1], 4)]


def figures(model: Sequence[float], human: Sequence[float], tolerance: float) -> dict[str, Any]:
    """n, the share within `tolerance` points and the MAE of (model, human) pairs, each with its 95% interval."""
    diffs = [abs(float(m) - float(h)) for m, h in zip(model, human, strict=True)]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "within_tolerance": None, "within_tolerance_ci95": None, "mae": None, "mae_ci95": None}
    k = sum(d <= tolerance + _EPS for d in diffs)
    return {"n": n, "within_tolerance": _round(k / n), "within_tolerance_ci95": _interval(intervals.wilson(k, n)),
            "mae": _round(sum(diffs) / n), "mae_ci95": _interval(intervals.bootstrap_mean(diffs))}


def report_from_pairs(pairs: Iterable[dict], tolerance: float) -> dict[str, Any]:
    """The figures of one population of pairs (dicts with exam_id, question_id, max_points, model_score,
    human_score), overall and per question (sorted by exam and question)."""
    pairs = list(pairs)
    by_question: dict[tuple[str, str], list[dict]] = {}
    for p in pairs:
        by_question.setdefault((p["exam_id"], p["question_id"]), []).append(p)
    per_question = [{"exam_id": exam, "question_id": qid, "max_points": float(group[0]["max_points"]),
                     **figures([p["model_score"] for p in group], [p["human_score"] for p in group], tolerance)}
                    for (exam, qid), group in sorted(by_question.items())]
    overall = figures([p["model_score"] for p in pairs], [p["human_score"] for p in pairs], tolerance)
    return {"overall": overall, "per_question": per_question}


def audit_report(conn: psycopg.Connection, inst: Institution) -> dict[str, Any]:
    """The institution's audit figures from all its reviewed audit items to date, and the routed ones apart:
    {"tolerance_points", "items": {status: audit items}, "unreviewed_model": {...}, "routed": {...}}."""
    from gradeflow.core import db

    pairs = db.fetch_all(conn, "release/audit_pairs", {"inst": inst.id})
    items = {r["status"]: r["items"] for r in db.fetch_all(conn, "release/audit_items", {"inst": inst.id})}
    found: dict[str, Any] = {"tolerance_points": inst.tolerance_points, "audit_rate": inst.audit_rate,
                             "audit_min_per_question": inst.audit_min_per_question, "items": items}
    for origin, name in POPULATIONS:
        found[name] = report_from_pairs((p for p in pairs if p["origin"] == origin), inst.tolerance_points)
    return found


def describe(found: dict[str, Any]) -> str:
    """One line per population for logs and summaries: n, within tolerance and MAE with their intervals."""
    def part(f: dict) -> str:
        if not f["n"]:
            return "n=0"
        lo, hi = f["within_tolerance_ci95"]
        mlo, mhi = f["mae_ci95"]
        return (f"n={f['n']}, within ±{found['tolerance_points']:g} pt {f['within_tolerance']:.1%} "
                f"[{lo:.1%}, {hi:.1%}], MAE {f['mae']:.3f} [{mlo:.3f}, {mhi:.3f}]")
    return (f"unreviewed model grades (audits): {part(found['unreviewed_model']['overall'])}; "
            f"routed to review: {part(found['routed']['overall'])}")
