"""Review items' life (`review_items.status`): open, reviewed or closed (docs/review-round-trip.md).

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
