"""Review items' life (`review_items.status`): open, reviewed or closed (docs/review-round-trip.md).

Items are born two ways: work waiting in review gets its item (`sync_review_items`, origin `routed`), and the
nightly audit sample draws items from the model grades released without a human (`draw_audit_sample`, origin
`audit`: the grades stay released; the reviewer cannot tell the two apart).

The transitions are core.states.REVIEW_ITEM_TRANSITIONS (docs/answer-lifecycle.md, "A review item"); a
reviewer's score moves an item to reviewed in gradeflow.lifecycle.machine.apply_human_reviews. May import:
gradeflow.core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradeflow.core import db

if TYPE_CHECKING:
    from datetime import date

    import psycopg

    from gradeflow.core.config import Institution


def sync_review_items(conn: psycopg.Connection, inst: Institution, day: date) -> None:
    """Work waiting in review without an item -> a new open item (or its reviewed/closed item reopened);
    open items with nothing left waiting (withdrawn by a rerun) -> closed. Call it in a transaction."""
    params = {"inst": inst.id, "day": day}
    db.execute(conn, "lifecycle/review_sync_new_items", params)
    db.execute(conn, "lifecycle/review_sync_link_queue", params)
    db.execute(conn, "lifecycle/review_sync_close_withdrawn", params)


def draw_audit_sample(conn: psycopg.Connection, inst: Institution, day: date) -> dict[str, int]:
    """None -> open (origin audit): the day's audit sample of model grades released without a human, drawn once.

    Per question, max(audit_min_per_question, ceil(audit_rate * N)) of its N model requests graded and not routed
    (at most N), chosen by md5(institution / day / custom_id): reproducible, and idempotent (audited requests
    count towards the target, so a rerun draws nothing new). Returns {"exam_id/question_id": items drawn now}.
    Call it in a transaction; one draw per institution and day at a time (transaction-scoped advisory lock).
    """
    from decimal import Decimal

    conn.execute("SELECT pg_advisory_xact_lock(gradeflow_lock_key(%s))", (f"audit:{inst.id}:{day}",))
    rows = db.fetch_all(conn, "lifecycle/draw_audit_sample", {
        "inst": inst.id, "day": day, "rate": Decimal(repr(inst.audit_rate)),
        "min_per_question": inst.audit_min_per_question})
    drawn: dict[str, int] = {}
    for row in rows:
        key = f"{row['exam_id']}/{row['question_id']}"
        drawn[key] = drawn.get(key, 0) + 1
    return drawn
