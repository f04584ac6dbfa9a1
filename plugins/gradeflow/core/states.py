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
}
# Why a released answer is still pending (release_results.pending_reason).
PENDING_REASONS = ("in_review", "deferred_budget", "deferred_cap", "pending_model", "received")
DEFER_REASONS = ("deferred_budget", "deferred_cap")
