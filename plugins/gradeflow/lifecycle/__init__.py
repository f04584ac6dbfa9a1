"""An answer's life and the state machines of model work: the only writer of every status.

May import: gradeflow.core.
"""

from gradeflow.lifecycle.machine import (  # noqa: F401  the package's public API
    DEFER_REASONS,
    GRADERS,
    PENDING_REASONS,
    REVIEW_REASONS,
    STATES,
    apply_human_reviews,
    apply_model_grades,
    apply_review_grades,
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
