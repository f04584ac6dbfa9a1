"""An answer's life: one state machine, and the only code that moves model work between its states.

Every answer is in exactly one state (the view `answer_lifecycle`, docs/answer-lifecycle.md):

    received ──► queued ──► graded (rule | llm | human)
       │           │  ▲
       │           │  └── requeue (a passing failure, attempts left) / undefer (a new night)
       │           ├──► deferred   (over tonight's budget or the API's enqueued-token cap)
       │           └──► in_review  (a reason from REVIEW_REASONS) ──► graded (human)
       └──► graded (rule): objective questions and empty answers, at prepare

A model grade that may not be released as it is (confidence below `min_confidence`, raw score out of
range) is routed to review with its suggestion (`route_doubtful`); a reviewer's score grades every
answer of its review item (`apply_human_reviews`, a new grade version if it was reviewed before).

Model work is held per distinct answer (`llm_requests`, identical answers merged); an answer's state
follows its request: graded requests fan out to grades, reviewed ones to the review queue. Callers
(prepare, grading, review ingest, reruns) never update those statuses themselves: they call these
functions, inside their own transaction.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gradeflow.core import db

if TYPE_CHECKING:
    from datetime import date

    import psycopg

    from gradeflow.core.config import Institution

from gradeflow.core.states import (  # noqa: F401  re-exported: the machine's vocabulary
    DEFER_REASONS,
    GRADERS,
    PENDING_REASONS,
    REVIEW_REASONS,
    STATES,
)

# Result-line error codes (gradeflow.grading.batch) and the review reason they lead to when not retried.
_CODE_REASONS = {
    "refusal": "refused",
    "truncated": "truncated",
    "invalid_json": "unparseable",
    "schema_mismatch": "unparseable",
    "no_choices": "unparseable",
    "malformed_line": "unparseable",
    "score_out_of_range": "score_out_of_range",
    "low_confidence": "low_confidence",
}


def grading_version(conn: psycopg.Connection, inst: Institution, day: date) -> int:
    """The day's grading version: 1, raised by each admin rerun (a rerun supersedes the current grades)."""
    return db.fetch_all(conn, "prepare/current_version", {"inst": inst.id, "day": day})[0]["version"]


def review_reason_for(code: str, retryable: bool) -> str:
    """The review reason for a model line that failed with `code` and will not be sent again."""
    if retryable:
        return "attempts_exhausted"
    return _CODE_REASONS.get(code, "invalid_request")


def _check_reason(reason: str, allowed) -> None:
    if reason not in allowed:
        raise ValueError(f"unknown reason {reason!r}; allowed: {sorted(allowed)}")


def create_requests(conn: psycopg.Connection, inst: Institution) -> int:
    """None -> pending: a model request for every group staged in `new_llm_requests` (prepare); return how
    many are new (a request that exists already is kept as it is)."""
    return db.execute(conn, "lifecycle/insert_requests", {"inst": inst.id})


def to_review(conn: psycopg.Connection, inst: Institution, custom_ids: list[str], reason: str,
              detail: str | None = None) -> int:
    """Model requests -> in_review (every answer they stand for); return the answers queued for review."""
    _check_reason(reason, REVIEW_REASONS)
    if not custom_ids:
        return 0
    return db.execute(conn, "lifecycle/to_review", {"inst": inst.id, "custom_ids": list(custom_ids),
                                                    "reason": reason, "detail": (detail or reason)[:2000]})


def defer(conn: psycopg.Connection, inst: Institution, custom_ids: list[str], reason: str) -> int:
    """Pending model requests -> deferred (they go first in the next night's work); return how many."""
    _check_reason(reason, DEFER_REASONS)
    if not custom_ids:
        return 0
    return db.execute(conn, "lifecycle/defer", {"inst": inst.id, "custom_ids": list(custom_ids), "reason": reason})


def undefer(conn: psycopg.Connection, inst: Institution, custom_ids: list[str]) -> int:
    """Deferred model requests -> pending again (a new night takes them first); return how many."""
    if not custom_ids:
        return 0
    return db.execute(conn, "lifecycle/undefer", {"inst": inst.id, "custom_ids": list(custom_ids)})


def queue(conn: psycopg.Connection, inst: Institution, job_id: int) -> int:
    """Pending model requests -> queued in batch job `job_id` (one more attempt each): the requests staged in
    the transaction's `staged_lines` (prepare/create_lines_stage.sql), each with its expected output tokens."""
    return db.execute(conn, "lifecycle/queue", {"job_id": job_id, "inst": inst.id})


def requeue(conn: psycopg.Connection, inst: Institution, custom_ids: list[str], reason: str) -> int:
    """Queued requests whose line failed for a passing reason -> pending, for the next wave."""
    if not custom_ids:
        return 0
    return db.execute(conn, "lifecycle/requeue", {"inst": inst.id, "custom_ids": list(custom_ids), "reason": reason})


def requeue_unrun(conn: psycopg.Connection, inst: Institution, custom_ids: list[str], reason: str) -> int:
    """Requests of a batch the API refused before running it (enqueued-token cap) -> pending, attempt given back."""
    if not custom_ids:
        return 0
    return db.execute(conn, "lifecycle/requeue_unrun", {"inst": inst.id, "custom_ids": list(custom_ids),
                                                        "reason": reason})


def grade_lines(conn: psycopg.Connection, inst: Institution, job_id: int) -> int:
    """Queued requests of job `job_id` whose good result is staged in `collected_lines` -> graded.

    In the same pass every staged line's tokens and cost are added to its request (the ledger across
    attempts), so each request row is written once. Returns the requests graded.
    """
    return db.fetch_all(conn, "lifecycle/grade_lines", {"inst": inst.id, "job_id": job_id})[0]["graded"]


def apply_model_grades(conn: psycopg.Connection, inst: Institution, day: date, version: int,
                       job_id: int | None = None) -> int:
    """Graded model requests -> an `llm` grade for every answer they stand for; return the answers graded.

    With `job_id` (collect), only that job's requests: the work is the job's size, not the day's.
    """
    return db.execute(conn, "lifecycle/apply_model_grades", {"inst": inst.id, "day": day, "version": version,
                                                             "job_id": job_id})


def fan_out_reviews(conn: psycopg.Connection, inst: Institution, day: date, version: int) -> int:
    """Answers identical to one whose request is in review join it there (merged work is reviewed once)."""
    return db.execute(conn, "lifecycle/fan_out_reviews", {"inst": inst.id, "day": day, "version": version})


def route_doubtful(conn: psycopg.Connection, inst: Institution, day: date, version: int,
                   job_id: int | None = None) -> dict[str, int]:
    """Newly graded model requests that may not be released as they are -> in_review; answers routed by reason.

    A raw score outside [0, max_points] goes to review as `score_out_of_range` (the clamped score is the
    suggestion); an answer screened as instruction-like (gradeflow.core.text.injection_signs) whose model score
    is above INJECTION_REVIEW_SHARE of max_points as `suspected_injection`; a met rubric item whose evidence
    quote is not in the answer as `evidence_not_found`; a
    confidence below the institution's `min_confidence` as `low_confidence`. The model's
    score, rationale and confidence stay on the request: the reviewer sees them as a suggestion. Call it
    right before `apply_model_grades`, in the same transaction (with the same `job_id`, if any).
    """
    from psycopg.types.json import Jsonb

    from gradeflow.core.text import INJECTION_REVIEW_SHARE, injection_signs

    scope = {"inst": inst.id, "day": day, "version": version, "job_id": job_id}
    candidates = db.fetch_all(conn, "lifecycle/screen_candidates", {**scope, "share": INJECTION_REVIEW_SHARE})
    suspected = {c["custom_id"]: ", ".join(signs) for c in candidates if (signs := injection_signs(c["answer_text"]))}
    rows = db.fetch_all(conn, "lifecycle/route_doubtful", {**scope, "min_confidence": inst.min_confidence,
                                                             "suspected": Jsonb(suspected)})
    routed: dict[str, int] = {}
    for row in rows:
        routed[row["reason"]] = routed.get(row["reason"], 0) + 1
    return routed


def apply_human_reviews(conn: psycopg.Connection, inst: Institution, file_id: int | None,
                        reviews: list[dict]) -> tuple[dict[int, int], list[int]]:
    """in_review (or a human grade of the same item) -> graded (human), for a reviewers' file at once.

    `reviews` are the file's validated rows in file order (review_id, score, reviewer, comment, row, day, and
    the rubric items ticked as `decisions`, if any: kept on the human grade).
    Every answer of a review's item takes the reviewer's score; a grade it had is superseded and kept
    (`is_current = false`), so a second review of an item is a new grade version, never an overwrite. A
    file naming an item twice applies its rows in order, in rounds of one row per item; each round is
    a fixed number of set-based statements, whatever the file's size. Returns ({row: answers graded},
    [rows of which no answer waits any more: their answers were regraded since; nothing applied]).
    Call it inside the file's transaction.
    """
    rounds: list[list[dict]] = []
    seen: dict[str, int] = {}
    for review in reviews:
        n = seen[review["review_id"]] = seen.get(review["review_id"], -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(review)
    graded: dict[int, int] = {}
    refused: list[int] = []
    params = {"inst": inst.id, "file_id": file_id}
    for batch in rounds:
        db.execute(conn, "lifecycle/stage_reviews")
        db.execute(conn, "lifecycle/clear_staged_reviews")
        with conn.cursor() as cur, cur.copy(
                "COPY stage_reviews (source_row, review_id, score, reviewer, comment, exam_day, decisions) "
                "FROM STDIN") as copy:
            for r in batch:
                ticks = r.get("decisions")
                copy.write_row((r["row"], r["review_id"], r["score"], r["reviewer"], r["comment"], r["day"],
                                None if ticks is None else json.dumps(ticks)))
        db.execute(conn, "lifecycle/drop_staged_review_targets")
        db.execute(conn, "lifecycle/staged_review_targets", params)
        refused += [r["source_row"] for r in db.fetch_all(conn, "lifecycle/unstage_reviews_without_targets")]
        db.execute(conn, "lifecycle/insert_staged_reviews", params)
        db.execute(conn, "lifecycle/supersede_for_staged_reviews", params)
        db.execute(conn, "lifecycle/insert_staged_human_grades", params)
        graded.update((r["source_row"], r["answers_graded"])
                      for r in db.fetch_all(conn, "lifecycle/close_staged_review_items", params))
    return graded, sorted(refused)


def apply_review_grades(conn: psycopg.Connection, inst: Institution, day: date, version: int) -> int:
    """Answers identical to one a human already graded, arriving later -> graded (human), the same grade."""
    return db.execute(conn, "lifecycle/apply_review_grades", {"inst": inst.id, "day": day, "version": version})
