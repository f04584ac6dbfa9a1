"""Reviewers' files in: a CSV or JSONL of scores under `incoming/<prefix>/<day>/reviews/`, validated row by row.

Reviewers return `review_id`, `score`, `reviewer`, optional `comment` (other columns, e.g. the packet's own, are
ignored). For a rubric-item question a reviewer may tick criteria instead: `criteria` names the ids of the items
met (separated by `;`, `,` or spaces; `-` for none); the score is computed from them (gradeflow.core.rubric) and a
score given beside them must equal it. The ingest sweep checksums, deduplicates, reports rejects and archives it
like any other file and hands its bytes to `ingest_review_file`: each row is validated (named rejects) and good
rows become `human` grades through `gradeflow.lifecycle.apply_human_reviews` (set-based, a fixed number of
statements per file), with an audit line per file. See docs/review-round-trip.md.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradeflow import lifecycle
from gradeflow.core import db
from gradeflow.core.rubric import score_from_decisions
from gradeflow.core.text import clean_text
from gradeflow.intake.rejects import FileRejected, Reject

if TYPE_CHECKING:
    import psycopg

    from gradeflow.intake.incoming import IncomingFile

log = logging.getLogger(__name__)

REQUIRED = ("review_id", "score", "reviewer")
OPTIONAL = ("comment", "criteria")
MAX_TEXT = 2000




@dataclass(frozen=True)
class ReviewRow:
    """One reviewer's score, as read from the file (not validated yet)."""

    row: int
    review_id: Any
    score: Any
    reviewer: Any
    comment: Any
    criteria: Any = None


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
    if not text.strip():
        raise FileRejected("the file is empty: expected a header with review_id, score, reviewer")
    return _parse_jsonl(text) if name.lower().endswith(".jsonl") else _parse_csv(text)


def _parse_csv(text: str) -> list[ReviewRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        raise FileRejected(f"the CSV header cannot be read: {exc}") from exc
    if any("\x00" in h for h in header):
        raise FileRejected("the header row holds NUL characters (a NUL in a data row rejects only that row)")
    missing = [c for c in REQUIRED if c not in header and not (c == "score" and "criteria" in header)]
    if missing:
        raise FileRejected(f"missing column(s) {missing}; the header must name review_id, score (or criteria), "
                           f"reviewer (comment optional), got {header}")
    dupes = sorted({h for h in header if header.count(h) > 1 and h in (*REQUIRED, *OPTIONAL)})
    if dupes:
        raise FileRejected(f"column(s) named twice in the header: {dupes}")
    where = {c: header.index(c) for c in (*REQUIRED, *OPTIONAL) if c in header}
    rows = []
    try:
        for number, cells in enumerate(reader, start=1):
            if not any(c.strip() for c in cells):
                continue
            get = lambda c, cells=cells: cells[where[c]] if c in where and where[c] < len(cells) else None  # noqa: E731
            rows.append(ReviewRow(number, get("review_id"), get("score"), get("reviewer"), get("comment"),
                                  get("criteria")))
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
        rows.append(ReviewRow(number, obj.get("review_id"), obj.get("score"), obj.get("reviewer"), obj.get("comment"),
                              obj.get("criteria")))
    return rows


_NOT_AN_OBJECT = object()



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
        return None, Reject(name, row.row, fld, shown if shown is None or clean_text(shown) else repr(shown), reason)

    if row.review_id is _NOT_AN_OBJECT:
        return reject(None, None, "the line is not a JSON object")
    review_id = _text(row.review_id)
    if review_id is None:
        return reject("review_id", row.review_id, "review_id is missing")
    if not clean_text(review_id):
        return reject("review_id", review_id, "review_id holds NUL or broken Unicode")
    item = items.get(review_id)
    if item is None:
        return reject("review_id", review_id, "unknown review_id: no review item of this institution has it "
                                              "(items of other institutions are refused)")
    if item["status"] == "closed":
        return reject("review_id", review_id, "review item is closed: its answers were regraded (admin rerun) "
                                              "or withdrawn; it takes no score")
    decisions = None
    if _given(row.criteria):
        decisions, problem = _ticks(row.criteria, item)
        if problem:
            return reject("criteria", row.criteria, problem)
        computed, _raw = score_from_decisions(item["rubric_items"], {d["id"]: d["met"] for d in decisions},
                                              item["max_points"])
        if _given(row.score) and _score(row.score) != computed:
            return reject("score", row.score, f"score {row.score} differs from {computed:g}, the score of the "
                                              "criteria ticked: give one, or both agreeing")
        row = ReviewRow(row.row, row.review_id, computed, row.reviewer, row.comment)
    score = _score(row.score)
    if score is None:
        return reject("score", row.score, "score is not a finite number")
    if not 0 <= score <= item["max_points"]:
        return reject("score", row.score, f"score outside [0, {item['max_points']:g}] (the question's max points)")
    reviewer = _text(row.reviewer)
    if reviewer is None:
        return reject("reviewer", row.reviewer, "reviewer is missing")
    if len(reviewer) > 200 or not clean_text(reviewer):
        return reject("reviewer", reviewer, "reviewer is longer than 200 characters or holds NUL or broken Unicode")
    comment = row.comment
    if comment is not None and not isinstance(comment, str):
        if _text(comment) is None:
            return reject("comment", comment, "comment is not text")
        comment = _text(comment)
    comment = (comment or "").strip() or None
    if comment is not None and (len(comment) > MAX_TEXT or not clean_text(comment)):
        return reject("comment", comment, f"comment is longer than {MAX_TEXT} characters or holds NUL or "
                                          "broken Unicode")
    return {"review_id": review_id, "score": score, "reviewer": reviewer, "comment": comment, "row": row.row,
            "day": item["exam_day"], "decisions": decisions}, None


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _ticks(value: Any, item: dict) -> tuple[list[dict] | None, str | None]:
    """A reviewer's ticked criteria as decisions [{id, met, points}], or why they cannot be read."""
    items = item.get("rubric_items")
    if not items:
        return None, "criteria given, but this question's rubric has no items: give a score"
    if isinstance(value, list):
        ids = [str(v).strip() for v in value]
    elif isinstance(value, str):
        ids = [] if value.strip() == "-" else [t for t in re.split(r"[;,\s]+", value.strip()) if t]
    else:
        return None, "criteria must be text (ids separated by ';') or a list of ids"
    known = [c["id"] for c in items]
    unknown = [i for i in ids if i not in known]
    if unknown:
        return None, f"unknown criterion id(s) {unknown[:5]}; this question's are {known}"
    return [{"id": c["id"], "met": c["id"] in ids, "points": c["points"]} for c in items], None


def ticks(value: Any, item: dict) -> tuple[list[dict] | None, str | None]:
    """Ticked criteria read as a reviewer's file reads them (for gradeflow.admin.evaluate): decisions or why not."""
    return _ticks(value, item)


def _last_per_item(name: str, reviews: list[dict], rejects: list[Reject]) -> list[dict]:
    """One review per item: the file's last row for it stands. Every earlier row of the same item is a line of
    the rejects report: `duplicate` when it says the same as the row that stands (score, reviewer, comment),
    else a warning naming the row that stands. So a file is applied in one set-based round, whatever its shape."""
    last = {review["review_id"]: i for i, review in enumerate(reviews)}
    for review in reviews:
        stands = reviews[last[review["review_id"]]]
        if stands is review:
            continue
        if (review["score"], review["reviewer"], review["comment"]) == (stands["score"], stands["reviewer"],
                                                                       stands["comment"]):
            reason = (f"duplicate: the same review as row {stands['row']} (review_id, score, reviewer, comment); "
                      "applied once")
        else:
            reason = (f"warning: review_id named again in row {stands['row']}; the last row stands (score "
                      f"{stands['score']:g} by {stands['reviewer']}), this one is not applied")
        rejects.append(Reject(name, review["row"], "review_id", review["review_id"], reason))
    return [review for i, review in enumerate(reviews) if last[review["review_id"]] == i]


def ingest_review_file(conn: psycopg.Connection, file: IncomingFile, data: bytes) -> ReviewIngest:
    """Validate a reviewers' file (`data`: its bytes) and apply its good rows as human grades (inside the ingest
    transaction)."""
    inst, parsed, file_id, name = file.inst, file.parsed, file.file_id, file.name
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
    good_rows = _last_per_item(name, good_rows, result.rejects)
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
