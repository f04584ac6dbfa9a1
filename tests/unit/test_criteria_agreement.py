"""Per-criterion agreement (gradeflow.release.agreement.criteria_report) against hand-computed values."""

from __future__ import annotations

import json

from gradeflow.release import agreement


def _d(**met):
    return [{"id": k, "met": v, "points": 1} for k, v in met.items()]


def test_agreement_wilson_and_kappa_per_criterion_match_the_hand_computation():
    rows = [  # criterion a: model T T F F, human T F F F; criterion b: always both met
        {"question_id": "q1", "model_decisions": _d(a=True, b=True), "human_decisions": _d(a=True, b=True)},
        {"question_id": "q1", "model_decisions": _d(a=True, b=True), "human_decisions": _d(a=False, b=True)},
        {"question_id": "q1", "model_decisions": _d(a=False, b=True), "human_decisions": _d(a=False, b=True)},
        {"question_id": "q1", "model_decisions": json.dumps(_d(a=False, b=True)),  # JSON text is read too
         "human_decisions": _d(a=False, b=True)},
    ]
    a, b = agreement.criteria_report(rows)
    # a: 3 of 4 agree; Wilson [0.3006, 0.9544]; chance = 0.5*0.25 + 0.5*0.75 = 0.5, kappa = (0.75-0.5)/0.5 = 0.5
    assert a == {"question_id": "q1", "criterion": "a", "n": 4, "agree": 3, "agreement": 0.75, "ci_low": 0.3006,
                 "ci_high": 0.9544, "kappa": 0.5, "model_met_share": 0.5, "human_met_share": 0.25}
    # b: always met on both sides: agreement 1, kappa undefined (chance agreement is total)
    assert (b["criterion"], b["agreement"], b["kappa"], b["ci_low"]) == ("b", 1.0, None, 0.5101)


def test_a_criterion_only_one_side_decided_is_not_counted():
    rows = [{"question_id": "q", "model_decisions": _d(a=True, c=True), "human_decisions": _d(a=False)}]
    (only,) = agreement.criteria_report(rows)
    assert (only["criterion"], only["n"], only["agree"], only["kappa"]) == ("a", 1, 0, 0.0)
    assert agreement.criteria_report([]) == []


def test_kappa_is_negative_when_the_raters_disagree_systematically():
    assert agreement.cohen_kappa([True, False], [False, True]) == -1.0
    assert agreement.cohen_kappa([True, False, True, False], [True, False, True, False]) == 1.0
