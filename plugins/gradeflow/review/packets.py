"""Human review, packets out: review items and blind review packets (docs/review-round-trip.md).

* **Items.** Every distinct piece of work waiting in review (a model request, i.e. identical answers to a
  question merged; or a lone answer) is one review item with a random, opaque `review_id`.
* **Packets out.** `write_packet` writes the open items of an institution and day to
  `reviews/<prefix>/<day>/open-<timestamp>.csv` and `.parquet`: question, rubric, reference, the
  answer text, the model's suggestion (for rubric items its decisions with evidence quotes), and no student or
  submission identity (blind). The night's audit sample (lifecycle.draw_audit_sample) is drawn first and its
  items come in the same rows: no reason, no confidence, the same order (by question, then the random id), so
  a reviewer cannot tell an audited grade from a routed one.
  The CSV is safe to open in a spreadsheet: a cell that could run as a formula is prefixed with `'`.
* **Reviews in** arrive as files through intake (gradeflow.intake.review_files); `announce_reviews` is the
  cue for the publish DAG once they are applied.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from gradeflow import lifecycle
from gradeflow.core import db, storage
from gradeflow.core.config import Institution
from gradeflow.core.text import spreadsheet_safe

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

PACKET_COLUMNS = ("review_id", "exam_day", "exam_id", "question_id", "question_type", "question_text", "rubric",
                  "reference_answer", "max_points", "answer_text", "answers", "suggested_score",
                  "model_raw_score", "suggested_rationale", "earlier_reviews", "rubric_items", "suggested_criteria")
# Not in a packet, so that audit items are blind: the reason (an audit item has none) and the model's confidence
# (an audited grade's is above min_confidence, a low_confidence one's below). Operators see both in the log and
# the database; the released rows keep review_reason.
# Left empty in the packet for reviewers to fill in; `criteria` (ids of the rubric items met, e.g. "atp;resp")
# may stand for, or confirm, the score of a rubric-item question.
RETURN_COLUMNS = ("score", "criteria", "reviewer", "comment")


def open_items(conn: psycopg.Connection, inst: Institution, day: date) -> list[dict]:
    """The open review items of the day, one row per distinct piece of work, blind (see PACKET_COLUMNS); the
    night's audit sample is drawn first (once: a rerun draws nothing new)."""
    with conn.transaction():  # every piece of work waiting in review has its item; withdrawn ones are closed
        lifecycle.sync_review_items(conn, inst, day)
        drawn = lifecycle.draw_audit_sample(conn, inst, day)
    if drawn:
        log.info("Audit sample %s %s: %d model grade(s) released without a human drawn into review (%s)", inst.id,
                 day, sum(drawn.values()), ", ".join(f"{q} {n}" for q, n in sorted(drawn.items())))
    return db.fetch_all(conn, "review/open_items", {"inst": inst.id, "day": day})


@dataclass
class Packet:
    """A review packet written to S3 (no keys when nothing is open)."""

    items: int
    answers: int
    csv_key: str | None = None
    parquet_key: str | None = None
    by_reason: dict[str, int] = field(default_factory=dict)  # routed items by reason
    audit: int = 0  # audit items (not in by_reason: nothing waits, the grades are released)


def packet_csv(rows: list[dict]) -> bytes:
    """The packet as CSV (UTF-8 with BOM for spreadsheets), formula-safe, with empty columns to fill in."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*PACKET_COLUMNS, *RETURN_COLUMNS])
    for row in rows:
        writer.writerow([spreadsheet_safe(row[c]) for c in PACKET_COLUMNS] + [""] * len(RETURN_COLUMNS))
    return ("\ufeff" + buf.getvalue()).encode()


def packet_parquet(rows: list[dict]) -> bytes:
    """The packet as Parquet (values as they are: Parquet cells never run as formulas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.float64() if c in ("max_points", "suggested_score", "model_raw_score") else
                         pa.int32() if c in ("answers", "earlier_reviews") else pa.string())
                        for c in PACKET_COLUMNS])
    table = pa.Table.from_pylist([{c: r[c] for c in PACKET_COLUMNS} for r in rows], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_packet(conn: psycopg.Connection, s3, inst: Institution, day: date, when: datetime | None = None) -> Packet:
    """Write the day's open review items to reviews/<prefix>/<day>/open-<timestamp>.csv and .parquet."""
    rows = open_items(conn, inst, day)
    packet = Packet(len(rows), sum(r["answers"] for r in rows))
    for row in rows:
        if row["origin"] == "audit":
            packet.audit += 1
        else:
            packet.by_reason[row["reason"]] = packet.by_reason.get(row["reason"], 0) + 1
    if not rows:
        log.info("Review packet %s %s: no open review items, nothing written", inst.id, day)
        return packet
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    packet.csv_key = inst.key("reviews", day, f"open-{stamp}.csv")
    packet.parquet_key = inst.key("reviews", day, f"open-{stamp}.parquet")
    storage.write_bytes(s3, packet.csv_key, packet_csv(rows), "text/csv")
    storage.write_bytes(s3, packet.parquet_key, packet_parquet(rows), "application/vnd.apache.parquet")
    log.info("Review packet %s %s: %d open item(s) standing for %d answer(s) (%s; audit %d) written to %s and "
             ".parquet", inst.id, day, packet.items, packet.answers,
             ", ".join(f"{k} {v}" for k, v in sorted(packet.by_reason.items())), packet.audit, packet.csv_key)
    return packet


def announce_reviews(conn: psycopg.Connection, inst: Institution) -> list[str]:
    """The earliest exam day with reviews applied since the last call (marked announced), or []: the cue
    for the publish DAG (one day per call; later days follow at the next call)."""
    with conn.transaction():
        rows = db.fetch_all(conn, "review/announce", {"inst": inst.id})
    return [r["exam_day"] for r in rows]
