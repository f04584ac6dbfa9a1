"""How far the model agrees with human graders: the statistics, per question and overall.

Used by the release (every answer a human graded that also had a model suggestion: the day's
agreement report) and by `gradeflow.admin.evaluate` (a CSV of human-scored answers through the same
prompt and Batch API path). All figures are computed with numpy/pandas:

* `n` pairs; `pearson_r` of model and human points (None when either side does not vary);
* `qwk`: quadratic weighted kappa on points rounded to whole numbers, categories 0..round(max);
* `mae`: mean absolute difference in points;
* `changed_share`: the share of model grades a human changed (any difference).

For rubric-item questions, `criteria_report` compares the model's decision on each criterion with the reviewer's
tick: per criterion `n`, `agreement` (share of equal decisions) with its 95% Wilson interval
(gradeflow.core.intervals), Cohen's `kappa` (by hand: two raters, two categories) and how often each side met it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from gradeflow.core.intervals import wilson

if TYPE_CHECKING:
    import pandas as pd
    import psycopg

    from gradeflow.core.config import Institution

# Confidence bands for choosing min_confidence (lower bound inclusive, upper exclusive; the last includes 1).
CONFIDENCE_BANDS = ((0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 1.0))
_EPS = 1e-9


def pearson_r(model: np.ndarray, human: np.ndarray) -> float | None:
    """Pearson's correlation, or None when there are fewer than two pairs or a side is constant."""
    model, human = np.asarray(model, dtype=float), np.asarray(human, dtype=float)
    if len(model) < 2 or np.std(model) == 0 or np.std(human) == 0:
        return None
    return float(np.corrcoef(model, human)[0, 1])


def quadratic_weighted_kappa(model: np.ndarray, human: np.ndarray, max_points: float) -> float | None:
    """Cohen's kappa with quadratic weights on points rounded half up, categories 0..round(max_points).

    None when it is undefined (no pairs, or every rating in one category on both sides).
    """
    a = np.floor(np.asarray(model, dtype=float) + 0.5).astype(int)
    b = np.floor(np.asarray(human, dtype=float) + 0.5).astype(int)
    if len(a) == 0:
        return None
    k = int(math.floor(max_points + 0.5)) + 1
    a, b = np.clip(a, 0, k - 1), np.clip(b, 0, k - 1)
    observed = np.zeros((k, k))
    np.add.at(observed, (a, b), 1)
    expected = np.outer(np.bincount(a, minlength=k), np.bincount(b, minlength=k)) / len(a)
    idx = np.arange(k)
    weights = (idx[:, None] - idx[None, :]) ** 2 / max((k - 1) ** 2, 1)
    denominator = float((weights * expected).sum())
    if denominator == 0:
        return None
    return float(1 - (weights * observed).sum() / denominator)


def figures(model: np.ndarray, human: np.ndarray, max_points: float) -> dict[str, Any]:
    """n, pearson_r, qwk, mae and changed_share of one set of (model, human) pairs."""
    model, human = np.asarray(model, dtype=float), np.asarray(human, dtype=float)
    n = len(model)
    if n == 0:
        return {"n": 0, "pearson_r": None, "qwk": None, "mae": None, "changed_share": None}
    diff = np.abs(model - human)
    return {"n": n, "pearson_r": _round(pearson_r(model, human)),
            "qwk": _round(quadratic_weighted_kappa(model, human, max_points)),
            "mae": _round(float(diff.mean())), "changed_share": _round(float((diff > _EPS).mean()))}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def report(pairs: pd.DataFrame) -> dict[str, Any]:
    """Agreement overall and per question of a frame with question_id, max_points, model_score, human_score.

    Per question, everything is in the question's own points. Overall, `mae` and `changed_share` are
    in points as given, while `pearson_r` and `qwk` compare scores scaled to the largest max points
    (so questions worth different points share one scale).
    """
    if pairs.empty:
        return {"overall": figures(np.array([]), np.array([]), 1), "per_question": []}
    top = float(pairs["max_points"].max())
    scale = top / pairs["max_points"].astype(float)
    overall = figures(pairs["model_score"] * scale, pairs["human_score"] * scale, top)
    unscaled = figures(pairs["model_score"], pairs["human_score"], top)
    overall.update(mae=unscaled["mae"], changed_share=unscaled["changed_share"])
    per_question = []
    for qid, group in pairs.groupby("question_id", sort=True):
        per_question.append({"question_id": str(qid), "max_points": float(group["max_points"].iloc[0]),
                             **figures(group["model_score"], group["human_score"], float(group["max_points"].max()))})
    return {"overall": overall, "per_question": per_question}


def by_confidence(pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Agreement per model-confidence band, and what each min_confidence threshold would auto-release."""
    rows = []
    total = len(pairs)
    for low, high in CONFIDENCE_BANDS:
        upper = pairs["confidence"] <= high if high >= 1.0 else pairs["confidence"] < high
        band = pairs[(pairs["confidence"] >= low) & upper]
        above = pairs[pairs["confidence"] >= low]
        rows.append({"band": f"[{low:.2f}, {high:.2f}{']' if high >= 1.0 else ')'}",
                     **{k: v for k, v in report(band)["overall"].items()},
                     "if_min_confidence": low,
                     "auto_released_share": _round(len(above) / total) if total else None,
                     "auto_released_mae": report(above)["overall"]["mae"]})
    return rows


def release_pairs(conn: psycopg.Connection, inst: Institution, release_id: int) -> pd.DataFrame:
    """(model suggestion, human grade) for every answer of a release that has both."""
    import pandas as pd

    from gradeflow.core import db

    rows = db.fetch_all(conn, "publish/agreement_pairs", {"inst": inst.id, "release_id": release_id})
    return pd.DataFrame(rows, columns=["question_id", "max_points", "model_score", "human_score", "confidence"])


def day_pairs(conn: psycopg.Connection, inst: Institution, day) -> pd.DataFrame:
    """(model suggestion, current human grade) for every answer of the day that has both, live."""
    import pandas as pd

    from gradeflow.core import db

    rows = db.fetch_all(conn, "review/agreement_pairs", {"inst": inst.id, "day": day})
    return pd.DataFrame(rows, columns=["question_id", "max_points", "model_score", "human_score", "confidence"])


def agreement_rows(conn: psycopg.Connection, inst: Institution, day) -> list[dict[str, Any]]:
    """The day's agreement per question as flat rows for reports: the figures of `report`, plus `pairs`
    (= n), `mean_abs_diff` (= mae) and `exact_share` (1 - changed_share)."""
    found = report(day_pairs(conn, inst, day))
    return [{**q, "pairs": q["n"], "mean_abs_diff": q["mae"], "exact_share": round(1 - q["changed_share"], 4)}
            for q in found["per_question"]]


# ------------------------------------------------------------------------------- per-criterion agreement


def _met_by_id(decisions: Any) -> dict[str, bool]:
    """{criterion id: met} from stored decisions (a list of {id, met, ...}, or its JSON text)."""
    if isinstance(decisions, str):
        import json

        decisions = json.loads(decisions)
    return {str(d["id"]): bool(d.get("met")) for d in decisions or [] if isinstance(d, dict) and "id" in d}


def cohen_kappa(model: list[bool], human: list[bool]) -> float | None:
    """Cohen's kappa of two raters' yes/no decisions; None when chance agreement is total (both constant alike)."""
    n = len(model)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(model, human, strict=True)) / n
    pm, ph = sum(model) / n, sum(human) / n
    chance = pm * ph + (1 - pm) * (1 - ph)
    if chance >= 1 - _EPS:
        return None
    return (observed - chance) / (1 - chance)


def criteria_report(rows: list[dict]) -> list[dict[str, Any]]:
    """Per (question, criterion): the model's decisions against the reviewer's ticks.

    `rows`: dicts with question_id, model_decisions and human_decisions (lists of {id, met}); a criterion counts
    for an answer when both sides decided it. One dict per criterion, sorted: question_id, criterion, n, agree,
    agreement, ci_low, ci_high (95% Wilson), kappa, model_met_share, human_met_share.
    """
    pairs: dict[tuple[str, str], tuple[list[bool], list[bool]]] = {}
    for row in rows:
        model, human = _met_by_id(row["model_decisions"]), _met_by_id(row["human_decisions"])
        for cid in model.keys() & human.keys():
            sides = pairs.setdefault((str(row["question_id"]), cid), ([], []))
            sides[0].append(model[cid])
            sides[1].append(human[cid])
    out = []
    for (qid, cid), (model, human) in sorted(pairs.items()):
        n, agree = len(model), sum(a == b for a, b in zip(model, human, strict=True))
        low, high = wilson(agree, n)
        out.append({"question_id": qid, "criterion": cid, "n": n, "agree": agree, "agreement": _round(agree / n),
                    "ci_low": _round(low), "ci_high": _round(high), "kappa": _round(cohen_kappa(model, human)),
                    "model_met_share": _round(sum(model) / n), "human_met_share": _round(sum(human) / n)})
    return out


def day_criteria_rows(conn: psycopg.Connection, inst: Institution, day) -> list[dict]:
    """(model decisions, reviewer's ticks) of every answer of the day a human graded by rubric items, live."""
    from gradeflow.core import db

    return db.fetch_all(conn, "review/criteria_pairs", {"inst": inst.id, "day": day})
