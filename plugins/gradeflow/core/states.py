"""The vocabulary of the state machines: states, graders and closed sets of reasons (docs/answer-lifecycle.md).

Data only: gradeflow.lifecycle moves things between these states; the migrations seed the reason tables from
here. May import: nothing of gradeflow.
"""

from __future__ import annotations

STATES = ("received", "queued", "deferred", "in_review", "graded")
GRADERS = ("rule", "llm", "human")
# Why an answer waits for a human: a closed set (table review_reasons holds the same codes and their meaning).
REVIEW_REASONS = {
    "low_confidence": "the model's confidence is below the institution's min_confidence",
    "score_out_of_range": "the model's raw score is outside [0, max_points]; the clamped score is a suggestion",
    "refused": "the model refused to grade the answer",
    "truncated": "the model's output was cut at the token limit (finish_reason=length)",
    "unparseable": "the model's output is not the JSON the grading schema asks for",
    "invalid_request": "the Batch API rejected the line's input (a 4xx error): sending it again cannot help",
    "attempts_exhausted": "the line failed for a passing reason (expired, cancelled, rate limit, timeout, conflict, "
                          "server error) on every allowed attempt",
    "batch_failed": "the whole batch failed for a reason that sending it again cannot fix",
    "manual": "an admin or reviewer asked for a human grade",
    "evidence_not_found": "a criterion's evidence quote does not occur in the answer (after whitespace "
                          "normalisation)",
    "suspected_injection": "the answer holds instruction-like text (role tags, 'ignore the rubric', a request "
                           "for marks, grade-shaped JSON, a formula, a very long text) and the model scored it "
                           "above half of max_points",
}
# Why a released answer is still pending (release_results.pending_reason).
PENDING_REASONS = ("in_review", "deferred_budget", "deferred_cap", "pending_model", "received")
DEFER_REASONS = ("deferred_budget", "deferred_cap")

# ------------------------------------------------------------------------------------ the state machines
# Each machine: its states and its transitions, from-state -> the states it may move to. `None` is birth
# (the row is inserted). A state may always be written again as it is (recording what is already true).
# gradeflow.lifecycle is the only writer of these columns (tests/unit/test_status_writes.py); the CHECKs
# of the columns hold the same states (migrations 006 and 013); docs/answer-lifecycle.md draws them.

# llm_requests.status: model work for one distinct answer.
REQUEST_STATES = ("pending", "queued", "graded", "review", "reviewed", "deferred", "superseded")
REQUEST_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"pending"}),                                       # prepare: new work
    "pending": frozenset({"queued", "deferred", "review", "superseded"}),
    "queued": frozenset({"pending", "graded", "review", "superseded"}),   # pending: requeue / requeue_unrun
    "deferred": frozenset({"pending", "review", "superseded"}),           # pending: undefer (a new night)
    "graded": frozenset({"review", "reviewed"}),  # route_doubtful, a manual review; reviewed: an audit's score
    "review": frozenset({"reviewed"}),                                    # a reviewer's score
    "reviewed": frozenset(),
    "superseded": frozenset(),                                            # a rerun withdrew unsent work
}

# review_items.status: one piece of work (a request, or a lone answer) in human review. Its origin (not a status:
# set at birth) is 'routed' (work waits in review with a reason) or 'audit' (drawn at random from the model grades
# released without a human; its answers stay graded).
REVIEW_ITEM_ORIGINS = ("routed", "audit")
REVIEW_ITEM_STATES = ("open", "reviewed", "closed")
REVIEW_ITEM_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"open"}),                 # work waits in review and has no item yet, or an audit drew it
    "open": frozenset({"reviewed", "closed"}),  # closed: withdrawn without a review (a rerun regraded it)
    "reviewed": frozenset({"open"}),            # answers wait again (reopened: its next review is a new version)
    "closed": frozenset({"open"}),
}

# batch_jobs.status: ours (prepared, superseded) and the Batch API's own, as last seen by polling.
BATCH_API_LIVE = ("validating", "in_progress", "finalizing", "cancelling")
BATCH_API_FINAL = ("completed", "failed", "expired", "cancelled")
JOB_STATES = ("prepared", *BATCH_API_LIVE, *BATCH_API_FINAL, "superseded", "upload_refused")
_API_STATES = frozenset(BATCH_API_LIVE + BATCH_API_FINAL)
JOB_TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"prepared"}),                                  # prepare wrote its input file
    # submitted (or reattached by fingerprint): whatever the API says the batch is now
    "prepared": _API_STATES | {"superseded", "upload_refused"},     # superseded: a rerun withdrew it unsent;
    # upload_refused: the API refused its file (HTTP 400): closed, its lines go out again in smaller jobs
    # polling sees the API's states in their order, possibly skipping some
    "validating": _API_STATES - {"validating"},
    "in_progress": _API_STATES - {"validating", "in_progress"},
    "finalizing": frozenset({"completed", "failed", "expired", "cancelling", "cancelled"}),
    "cancelling": frozenset({"cancelled", "completed", "failed", "expired"}),
    **{final: frozenset() for final in BATCH_API_FINAL},
    "superseded": frozenset(),
    "upload_refused": frozenset(),
}


def may_move(transitions: dict[str | None, frozenset[str]], old: str | None, new: str) -> bool:
    """Whether `old` -> `new` is a transition of the machine (writing a state again as it is always is)."""
    return old == new or new in transitions.get(old, frozenset())


def sources(transitions: dict[str | None, frozenset[str]], new: str) -> list[str]:
    """The states from which a row may be written as `new` (itself included)."""
    return sorted({new} | {old for old, to in transitions.items() if old is not None and new in to})
