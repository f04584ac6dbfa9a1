"""Human review, round trip: review items, blind review packets out, reviewers' files in.

* **Items.** Every distinct piece of work waiting in review (a model request, i.e. identical answers to a
  question merged; or a lone answer) is one review item with a random, opaque `review_id`.
* **Packets out.** `write_packet` writes the open items of an institution and day to
  `reviews/<prefix>/<day>/open-<timestamp>.csv` and `.parquet`: question, rubric, reference, the
  answer text, the model's suggestion and the reason, and no student or submission identity (blind).
  The CSV is safe to open in a spreadsheet: a cell that could run as a formula is prefixed with `'`.
* **Reviews in.** Reviewers return a CSV or JSONL file (`review_id`, `score`, `reviewer`, optional
  `comment`; other columns, e.g. the packet's own, are ignored) under `incoming/<prefix>/<day>/reviews/`.
  The ingest sweep checksums, deduplicates, reports rejects and archives it like any other file and
  hands its bytes to `ingest_review_file`: each row is validated (named rejects) and good rows become
  `human` grades through `gradeflow.lifecycle.apply_human_reviews` (set-based, a fixed number of
  statements per file), with an audit line per file.

See docs/review-round-trip.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from gradeflow import db, lifecycle, storage
from gradeflow.config import Institution
from gradeflow.contract import FileRejected, IncomingPath, Reject

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

PACKET_COLUMNS = ("review_id", "exam_day", "exam_id", "question_id", "question_type", "question_text", "rubric",
                  "reference_answer", "max_points", "answer_text", "answers", "reason", "suggested_score",
                  "model_raw_score", "suggested_rationale", "suggested_confidence", "earlier_reviews")
RETURN_COLUMNS = ("score", "reviewer", "comment")  # left empty in the packet for reviewers to fill in
REQUIRED = ("review_id", "score", "reviewer")
MAX_TEXT = 2000


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs as a formula (the rejects report's rule, `ingest.report_cell`)."""
    from gradeflow.ingest import report_cell

    return report_cell(value)


# ------------------------------------------------------------------------------------------ items, packets


def sync_items(conn: psycopg.Connection, inst: Institution, day: date) -> None:
    """Give every piece of work waiting in review its item; close items withdrawn without a review."""
    params = {"inst": inst.id, "day": day}
    with conn.transaction():
        db.execute(conn, "review/sync_new_items", params)
        db.execute(conn, "review/sync_link_queue", params)
        db.execute(conn, "review/sync_close_withdrawn", params)


def open_items(conn: psycopg.Connection, inst: Institution, day: date) -> list[dict]:
    """The open review items of the day, one row per distinct piece of work, blind (see PACKET_COLUMNS)."""
    sync_items(conn, inst, day)
    return db.fetch_all(conn, "review/open_items", {"inst": inst.id, "day": day})


@dataclass
class Packet:
    """A review packet written to S3 (no keys when nothing is open)."""

    items: int
    answers: int
    csv_key: str | None = None
    parquet_key: str | None = None
    by_reason: dict[str, int] = field(default_factory=dict)


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

    schema = pa.schema([(c, pa.float64() if c in ("max_points", "suggested_score", "model_raw_score",
                                                   "suggested_confidence") else
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
        packet.by_reason[row["reason"]] = packet.by_reason.get(row["reason"], 0) + 1
    if not rows:
        log.info("Review packet %s %s: no open review items, nothing written", inst.id, day)
        return packet
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    packet.csv_key = inst.key("reviews", day, f"open-{stamp}.csv")
    packet.parquet_key = inst.key("reviews", day, f"open-{stamp}.parquet")
    storage.write_bytes(s3, packet.csv_key, packet_csv(rows), "text/csv")
    storage.write_bytes(s3, packet.parquet_key, packet_parquet(rows), "application/vnd.apache.parquet")
    log.info("Review packet %s %s: %d open item(s) standing for %d answer(s) (%s) written to %s and .parquet",
             inst.id, day, packet.items, packet.answers,
             ", ".join(f"{k} {v}" for k, v in sorted(packet.by_reason.items())), packet.csv_key)
    return packet


# ------------------------------------------------------------------------------------------ reviews in


@dataclass(frozen=True)
class ReviewRow:
    """One reviewer's score, as read from the file (not validated yet)."""

    row: int
    review_id: Any
    score: Any
    reviewer: Any
    comment: Any


@dataclass
class ReviewIngest:
    """What one reviewers' file did: rows read, applied, rejected; answers graded."""

    status: str  # loaded | rejected
    total: int = 0
    applied: int = 0
    answers_graded: int = 0
    rejects: list[Reject] = field(default_factory=list)


def parse_review_file(name: str, data: bytes) -> list[ReviewRow]:
    """The rows of a reviewers' CSV or JSONL file; FileRejected when the file as a whole cannot be read."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRejected(f"not UTF-8 text (byte {exc.start})") from exc
    if "\x00" in text:
        raise FileRejected("the file contains NUL characters")
    if not text.strip():
        raise FileRejected("the file is empty: expected a header with review_id, score, reviewer")
    return _parse_jsonl(text) if name.lower().endswith(".jsonl") else _parse_csv(text)


def _parse_csv(text: str) -> list[ReviewRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise FileRejected(f"the CSV header cannot be read: {exc}") from exc
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileRejected(f"missing column(s) {missing}; the header must name review_id, score, reviewer "
                           f"(comment optional), got {header}")
    dupes = sorted({h for h in header if header.count(h) > 1 and h in (*REQUIRED, "comment")})
    if dupes:
        raise FileRejected(f"column(s) named twice in the header: {dupes}")
    where = {c: header.index(c) for c in (*REQUIRED, "comment") if c in header}
    rows = []
    try:
        for number, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue
            get = lambda c, cells=cells: cells[where[c]] if c in where and where[c] < len(cells) else None  # noqa: E731
            rows.append(ReviewRow(number, get("review_id"), get("score"), get("reviewer"), get("comment")))
    except csv.Error as exc:
        raise FileRejected(f"CSV cannot be read after data row {len(rows)}: {exc}") from exc
    return rows


def _parse_jsonl(text: str) -> list[ReviewRow]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            rows.append(ReviewRow(number, _NOT_AN_OBJECT, None, None, None))
            continue
        rows.append(ReviewRow(number, obj.get("review_id"), obj.get("score"), obj.get("reviewer"), obj.get("comment")))
    return rows


_NOT_AN_OBJECT = object()


def _storable(text: str) -> bool:
    """Text PostgreSQL can store: no NUL, no lone surrogate (JSON escapes can carry both)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: Any) -> str | None:
    """A non-empty text value (numbers in JSONL allowed), else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    text = str(value).strip()
    return text or None


def _score(value: Any) -> float | None:
    """A finite number (a decimal comma is accepted in text), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+,\d+", text):
            text = text.replace(",", ".")
        try:
            value = float(text)
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _check_row(name: str, row: ReviewRow, items: dict[str, dict]) -> tuple[dict | None, Reject | None]:
    """A validated review (id, score, reviewer, comment, item) or the named reason it is refused."""
    def reject(fld: str | None, value: Any, reason: str) -> tuple[None, Reject]:
        shown = None if value is None else str(value)[:200]
        return None, Reject(name, row.row, fld, shown if shown is None or _storable(shown) else repr(shown), reason)

    if row.review_id is _NOT_AN_OBJECT:
        return reject(None, None, "the line is not a JSON object")
    review_id = _text(row.review_id)
    if review_id is None:
        return reject("review_id", row.review_id, "review_id is missing")
    item = items.get(review_id)
    if item is None:
        return reject("review_id", review_id, "unknown review_id: no review item of this institution has it "
                                              "(items of other institutions are refused)")
    if item["status"] == "closed":
        return reject("review_id", review_id, "review item is closed: its answers were regraded (admin rerun) "
                                              "or withdrawn; it takes no score")
    score = _score(row.score)
    if score is None:
        return reject("score", row.score, "score is not a finite number")
    if not 0 <= score <= item["max_points"]:
        return reject("score", row.score, f"score outside [0, {item['max_points']:g}] (the question's max points)")
    reviewer = _text(row.reviewer)
    if reviewer is None:
        return reject("reviewer", row.reviewer, "reviewer is missing")
    if len(reviewer) > 200 or not _storable(reviewer):
        return reject("reviewer", reviewer, "reviewer is longer than 200 characters or holds NUL or broken Unicode")
    comment = row.comment
    if comment is not None and not isinstance(comment, str):
        if _text(comment) is None:
            return reject("comment", comment, "comment is not text")
        comment = _text(comment)
    comment = (comment or "").strip() or None
    if comment is not None and (len(comment) > MAX_TEXT or not _storable(comment)):
        return reject("comment", comment, f"comment is longer than {MAX_TEXT} characters or holds NUL or "
                                          "broken Unicode")
    return {"review_id": review_id, "score": score, "reviewer": reviewer, "comment": comment, "row": row.row,
            "day": item["exam_day"]}, None


def ingest_review_file(inst: Institution, conn: psycopg.Connection, parsed: IncomingPath, file_id: int, name: str,
                       data: bytes) -> ReviewIngest:
    """Validate a reviewers' file and apply its good rows as human grades (inside the ingest transaction)."""
    try:
        rows = parse_review_file(name, data)
    except FileRejected as exc:
        return ReviewIngest("rejected", rejects=[Reject(name, None, None, None, str(exc))])
    ids = sorted({t for t in (_text(r.review_id) if r.review_id is not _NOT_AN_OBJECT else None for r in rows) if t})
    items = {i["review_id"]: i for i in db.fetch_all(conn, "review/find_items", {"inst": inst.id, "ids": ids})}
    result = ReviewIngest("loaded", total=len(rows))
    good_rows = []
    for row in rows:
        good, bad = _check_row(name, row, items)
        if bad:
            result.rejects.append(bad)
        else:
            good_rows.append(good)
    graded, refused = lifecycle.apply_human_reviews(conn, inst, file_id, good_rows)
    by_row = {g["row"]: g for g in good_rows}
    # Nothing waits for these items any more (their answers were regraded since): refused, and said so.
    result.rejects += [Reject(name, row, "review_id", by_row[row]["review_id"],
                              "review item is closed: none of its answers waits for this review") for row in refused]
    result.rejects.sort(key=lambda r: r.row or 0)
    result.applied = len(graded)
    result.answers_graded = sum(graded.values())
    db.audit(conn, "reviewers", "reviews_ingested", inst.id, parsed.exam_day,
             {"file": name, "file_id": file_id, "rows": result.total, "applied": result.applied,
              "answers_graded": result.answers_graded, "rejected": len(result.rejects),
              "reviewers": sorted({str(r.reviewer).strip() for r in rows if _text(r.reviewer)})[:50]})
    log.info("Reviews %s: %d row(s): %d applied (%d answers graded by a human), %d rejected", name, result.total,
             result.applied, result.answers_graded, len(result.rejects))
    return result


def announce_reviews(conn: psycopg.Connection, inst: Institution) -> list[str]:
    """The earliest exam day with reviews applied since the last call (marked announced), or []: the cue
    for the publish DAG (one day per call; later days follow at the next call)."""
    with conn.transaction():
        rows = db.fetch_all(conn, "review/announce", {"inst": inst.id})
    return [r["exam_day"] for r in rows]
