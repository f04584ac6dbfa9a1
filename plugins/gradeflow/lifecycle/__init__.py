"""The state machines (an answer's life, model requests, batch jobs, review items): the only writer of every status.

One small module per machine: `machine` (answers and their model requests), `jobs` (batch_jobs),
`reviews` (review_items); the states and transitions are data in gradeflow.core.states. Callers use
`from gradeflow import lifecycle; lifecycle.x(...)` inside their own transaction.
May import: gradeflow.core.
"""

from gradeflow.lifecycle.jobs import create_job, job_refused, job_state, job_submitted, withdraw_unsent  # noqa: F401
from gradeflow.lifecycle.machine import (  # noqa: F401  the package's public API
    DEFER_REASONS,
    GRADERS,
    PENDING_REASONS,
    REVIEW_REASONS,
    STATES,
    apply_human_reviews,
    apply_model_grades,
    apply_review_grades,
    create_requests,
    defer,
    fan_out_reviews,
    grade_lines,
    grading_version,
    queue,
    requeue,
    requeue_unrun,
    review_reason_for,
    route_doubtful,
    to_review,
    undefer,
)
from gradeflow.lifecycle.reviews import draw_audit_sample, sync_review_items  # noqa: F401
