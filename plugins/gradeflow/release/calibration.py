"""Which `min_confidence` buys which accuracy at which review workload: the threshold table (issue 14, item 3).

From human-scored model grades (pairs of model confidence, model score, human score and max points: reviews,
audits, or an `evaluate` run) it computes, for each candidate threshold t:

* `review_share`: the share of model-graded work whose confidence is below t (it would go to human review);
  from the pairs themselves, or from a separate population (every model grade of the period, as (confidence,
  count): the workload needs no human score; a confidence of None is work routed to review whatever the
  threshold, e.g. an evidence quote not in the answer);
* `accuracy`: among the pairs at or above t (what would be released unreviewed), the share whose model score
  is within `tolerance_points` of the human score, with its 95% Wilson interval (gradeflow.core.intervals);
* `unmeasured_share`: the share of the work t would release that lies in confidence bands (between consecutive
  candidate thresholds) holding no human-scored pair at all: work whose accuracy nothing measured. Routed answers
  are all below the current min_confidence, so without audits everything above it is unmeasured;
* `meets`: the interval's LOWER bound reaches `target_accuracy`, and at most MAX_UNMEASURED of what t releases
  is unmeasured (pairs from low-confidence answers alone never vouch for the confident ones).

The recommendation is the meeting row with the smallest review share (then the lowest threshold). The lower
bound, not the point estimate: a target is a promise about grades nobody checks, and a point estimate from a
few dozen pairs reaches 95% by luck about half the time; the lower bound of the 95% interval is reached by
luck at most 2.5% of the time, and it falls as the number of pairs shrinks, so a threshold backed by too few
human scores is not recommended. None when no threshold qualifies (too few pairs, or a model not accurate
enough at any workload): keep the current setting and collect more human scores.

`threshold_table`, `render` and `recommendation_text` are pure (no database, no I/O); `institution_table` reads an
institution's human-scored model grades and its population through include/sql/report/ (bind parameters).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from gradeflow.core.intervals import wilson

if TYPE_CHECKING:
    import psycopg

    from gradeflow.core.config import Institution

# Candidate thresholds: 0 (release everything), then 0.50 .. 0.90 by 0.05 and 0.91 .. 0.99 by 0.01 (calibrated
# confidences crowd near 1, where the choice is made).
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.0, *(round(0.5 + 0.05 * i, 2) for i in range(9)),
                                         *(round(0.91 + 0.01 * i, 2) for i in range(9)))
_EPS = 1e-9
MAX_UNMEASURED = 0.05


@dataclass(frozen=True)
class Pair:
    """One model grade with a human score for the same answer."""

    confidence: float
    model_score: float
    human_score: float
    max_points: float

    def within(self, tolerance_points: float) -> bool:
        """Whether the model score is within tolerance_points of the human score."""
        return abs(self.model_score - self.human_score) <= tolerance_points + _EPS


def pairs_from_rows(rows: Iterable[dict]) -> list[Pair]:
    """Pairs from dict rows with confidence, model_score, human_score, max_points (rows missing one are skipped)."""
    out = []
    for r in rows:
        values = [r.get(k) for k in ("confidence", "model_score", "human_score", "max_points")]
        if all(v is not None for v in values):
            out.append(Pair(*(float(v) for v in values)))
    return out


def threshold_table(pairs: Sequence[Pair], tolerance_points: float, target_accuracy: float,
                    thresholds: Sequence[float] | None = None,
                    population: Sequence[tuple[float | None, int]] | None = None) -> dict[str, Any]:
    """The table (one row per threshold) and the recommended row; see the module's docstring.

    `population`: (confidence, count) of every piece of model-graded work the review share is measured on
    (None: the pairs' own confidences, one each); a None confidence is reviewed at every threshold.
    """
    weighted = list(population) if population is not None else [(p.confidence, 1) for p in pairs]
    total = sum(n for _, n in weighted)
    grid = sorted(set(thresholds or DEFAULT_THRESHOLDS))
    bands = [(low, grid[i + 1] if i + 1 < len(grid) else math.inf) for i, low in enumerate(grid)]
    measured = {b for b in bands if any(b[0] - _EPS <= p.confidence < b[1] - _EPS for p in pairs)}
    work = {b: sum(n for c, n in weighted if c is not None and b[0] - _EPS <= c < b[1] - _EPS) for b in bands}
    rows = []
    for t in grid:
        released_work = sum(n for b, n in work.items() if b[0] >= t - _EPS)
        unmeasured = sum(n for b, n in work.items() if b[0] >= t - _EPS and b not in measured)
        unmeasured_share = unmeasured / released_work if released_work else 0.0
        released = [p for p in pairs if p.confidence >= t - _EPS]
        within = sum(p.within(tolerance_points) for p in released)
        interval = wilson(within, len(released))
        below = sum(n for c, n in weighted if c is None or c < t - _EPS)
        rows.append({
            "threshold": round(t, 4),
            "review_share": round(below / total, 4) if total else None,
            "released_pairs": len(released), "within": within,
            "accuracy": round(within / len(released), 4) if released else None,
            "ci_low": round(interval[0], 4) if interval else None,
            "ci_high": round(interval[1], 4) if interval else None,
            "unmeasured_share": round(unmeasured_share, 4),
            "meets": bool(interval and interval[0] >= target_accuracy - _EPS
                          and unmeasured_share <= MAX_UNMEASURED + _EPS),
        })
    meeting = [r for r in rows if r["meets"] and r["review_share"] is not None]
    best = min(meeting, key=lambda r: (r["review_share"], r["threshold"])) if meeting else None
    return {"pairs": len(pairs), "population": total, "tolerance_points": tolerance_points,
            "target_accuracy": target_accuracy, "rows": rows,
            "recommended": None if best is None else {k: best[k] for k in
                                                      ("threshold", "review_share", "accuracy", "ci_low")}}


def recommendation_text(table: dict[str, Any], current: float | None = None) -> str:
    """One sentence: the recommended min_confidence (and how it compares with the current one), or why none."""
    tol, target = table["tolerance_points"], table["target_accuracy"]
    best = table["recommended"]
    if best is None:
        unmeasured = any(r["unmeasured_share"] > MAX_UNMEASURED + _EPS and r["ci_low"] is not None
                         and r["ci_low"] >= target - _EPS for r in table["rows"])
        why = (" where the pairs reach it, most of the work released is in confidence bands no human scored "
               "(audits measure them)") if unmeasured else ""
        return (f"No threshold is recommended: at none is the 95% lower bound of the share within {tol:g} point(s) "
                f"of the human score at least {target:.0%} ({table['pairs']} human-scored pair(s)){why}; keep the "
                "current min_confidence and collect more human scores (reviews, audits, evaluate).")
    text = (f"Recommended min_confidence {best['threshold']:.2f}: {best['review_share']:.1%} of answers to review, "
            f"{best['accuracy']:.1%} of the rest within {tol:g} point(s) of the human score (95% lower bound "
            f"{best['ci_low']:.1%} >= target {target:.0%}; {table['pairs']} human-scored pair(s)).")
    if current is not None:
        text += f" Current min_confidence: {current:.2f}."
    return text


def render(table: dict[str, Any], current: float | None = None) -> str:
    """The table as text (evaluate and the thresholds command print it)."""
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    out = [f"threshold table: accuracy = share of released-unreviewed model grades within "
           f"{table['tolerance_points']:g} point(s) of the human score; target {table['target_accuracy']:.0%} "
           "(95% lower bound)",
           f"{'min_conf':>8} {'review':>7} {'pairs':>6} {'within':>6} {'accuracy':>8} {'95% interval':>17} "
           f"{'unmeasured':>10}  meets"]
    for r in table["rows"]:
        interval = "-" if r["ci_low"] is None else f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
        mark = "yes" if r["meets"] else "no"
        if table["recommended"] and r["threshold"] == table["recommended"]["threshold"]:
            mark += "  <- recommended"
        if current is not None and abs(r["threshold"] - current) < _EPS:
            mark += "  (current)"
        out.append(f"{r['threshold']:>8.2f} {pct(r['review_share']):>7} {r['released_pairs']:>6} {r['within']:>6} "
                   f"{pct(r['accuracy']):>8} {interval:>17} {pct(r['unmeasured_share']):>10}  {mark}")
    out.append(recommendation_text(table, current))
    return "\n".join(out)


# Review reasons that send work to review whatever min_confidence is (gradeflow.core.states.REVIEW_REASONS).
ROUTED_REGARDLESS = ("score_out_of_range", "evidence_not_found", "suspected_injection")
DEFAULT_WINDOW_DAYS = 28


def institution_rows(conn: psycopg.Connection, inst: Institution, first: date, last: date) -> list[dict]:
    """The institution's human-scored model grades of exam days first..last (include/sql/report/threshold_pairs)."""
    from gradeflow.core import db

    return db.fetch_all(conn, "report/threshold_pairs", {"inst": inst.id, "first": first, "last": last,
                                                         "forced": list(ROUTED_REGARDLESS)})


def institution_table(conn: psycopg.Connection, inst: Institution, first: date, last: date,
                      rows: list[dict] | None = None) -> dict[str, Any]:
    """The threshold table of an institution over exam days first..last: accuracy from every human score of a
    model grade (reviews and audits), review share from every model grade; its own tolerance and target."""
    from gradeflow.core import db

    population = db.fetch_all(conn, "report/threshold_population", {"inst": inst.id, "first": first, "last": last,
                                                                    "forced": list(ROUTED_REGARDLESS)})
    pairs = pairs_from_rows(rows if rows is not None else institution_rows(conn, inst, first, last))
    table = threshold_table(pairs, inst.tolerance_points, inst.target_accuracy,
                            population=[(r["confidence"], int(r["requests"])) for r in population])
    return {**table, "institution_id": inst.id, "first_day": str(first), "last_day": str(last),
            "min_confidence": inst.min_confidence}
