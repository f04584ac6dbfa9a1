-- An answer's life, as one state machine (docs/answer-lifecycle.md). Every answer is in exactly one
-- state at any time, derived from the tables below by the view answer_lifecycle:
--   received -> queued (model work written or sent) -> graded (rule | llm | human)
--                       -> deferred (over tonight's budget or the API's cap: first in line next night)
--                       -> in_review (a reason from review_reasons) -> graded (human)
-- Transitions are written by gradeflow.lifecycle only.

-- The closed set of reasons an answer waits for a human reviewer.
CREATE TABLE review_reasons (
    code        text PRIMARY KEY,
    description text NOT NULL
);
INSERT INTO review_reasons (code, description) VALUES
    ('low_confidence',     'the model''s confidence is below the institution''s min_confidence'),
    ('score_out_of_range', 'the model''s raw score is outside [0, max_points]; the clamped score is a suggestion'),
    ('refused',            'the model refused to grade the answer'),
    ('truncated',          'the model''s output was cut at the token limit (finish_reason=length)'),
    ('unparseable',        'the model''s output is not the JSON the grading schema asks for'),
    ('invalid_request',    'the Batch API rejected the line''s input (a 4xx error): sending it again cannot help'),
    ('attempts_exhausted', 'the line failed for a passing reason (expired, cancelled, rate limit, server error) on every allowed attempt'),
    ('batch_failed',       'the whole batch failed for a reason that sending it again cannot fix'),
    ('manual',             'an admin or reviewer asked for a human grade');

-- Open and closed review items keep a reason from the closed set; the free text stays in `detail`.
UPDATE review_queue SET detail = coalesce(detail, reason), reason = 'attempts_exhausted'
 WHERE reason NOT IN (SELECT code FROM review_reasons);
ALTER TABLE review_queue ADD CONSTRAINT review_queue_reason_known FOREIGN KEY (reason) REFERENCES review_reasons;

-- Model requests: `deferred` replaces `over_budget` (work that waits for the next night, never for a human).
ALTER TABLE llm_requests DROP CONSTRAINT llm_requests_status_check;
UPDATE review_queue SET resolved_at = now(), detail = coalesce(detail, '') || ' [deferred: not a review]'
 WHERE resolved_at IS NULL AND custom_id IN (SELECT custom_id FROM llm_requests WHERE status = 'over_budget');
ALTER TABLE llm_requests
    ADD COLUMN deferred_reason text CHECK (deferred_reason IN ('deferred_budget', 'deferred_cap')),
    ADD COLUMN deferred_at     timestamptz,
    ADD COLUMN nights_deferred integer NOT NULL DEFAULT 0,
    ADD COLUMN review_reason   text REFERENCES review_reasons;
UPDATE llm_requests SET status = 'deferred', deferred_reason = 'deferred_budget', deferred_at = now()
 WHERE status = 'over_budget';
ALTER TABLE llm_requests ADD CONSTRAINT llm_requests_status_check
    CHECK (status IN ('pending', 'queued', 'graded', 'review', 'deferred', 'superseded'));
ALTER TABLE llm_requests ADD CONSTRAINT llm_requests_deferred_has_reason
    CHECK ((status = 'deferred') = (deferred_reason IS NOT NULL));
CREATE INDEX llm_requests_open ON llm_requests (institution_id, status, exam_day, first_fifo_seq)
    WHERE status IN ('pending', 'queued', 'deferred');

-- Released rows say which state each answer is in: graded, or pending with the reason it waits.
ALTER TABLE release_results DROP CONSTRAINT release_results_status_check;
ALTER TABLE release_results
    ADD COLUMN pending_reason text,
    ADD COLUMN review_reason  text;
UPDATE release_results SET status = 'pending', pending_reason = 'in_review' WHERE status = 'pending_review';
ALTER TABLE release_results ADD CONSTRAINT release_results_status_check CHECK (status IN ('graded', 'pending'));
ALTER TABLE release_results ADD CONSTRAINT release_results_pending_has_reason CHECK (
    (status = 'graded' AND pending_reason IS NULL)
    OR (status = 'pending' AND pending_reason IN ('in_review', 'deferred_budget', 'deferred_cap',
                                                  'pending_model', 'received')));

-- One row per answer with the state it is in. `security_invoker`: row-level security applies to the caller.
CREATE VIEW answer_lifecycle WITH (security_invoker = true) AS
SELECT a.institution_id, a.exam_day, a.exam_id, a.submission_id, a.question_id, a.answer_sha256,
       g.grade_id, g.grader, g.score, g.max_points AS graded_max_points,
       v.review_id, v.reason AS review_reason,
       r.custom_id, r.status AS request_status, r.deferred_reason,
       CASE WHEN g.grade_id IS NOT NULL THEN 'graded'
            WHEN v.review_id IS NOT NULL THEN 'in_review'
            WHEN r.status = 'deferred' THEN 'deferred'
            WHEN r.status IN ('pending', 'queued') THEN 'queued'
            ELSE 'received' END AS state,
       CASE WHEN g.grade_id IS NOT NULL THEN NULL
            WHEN v.review_id IS NOT NULL THEN 'in_review'
            WHEN r.status = 'deferred' THEN r.deferred_reason
            WHEN r.status IN ('pending', 'queued') THEN 'pending_model'
            ELSE 'received' END AS pending_reason
  FROM answers a
  LEFT JOIN grades g ON g.institution_id = a.institution_id AND g.submission_id = a.submission_id
                    AND g.question_id = a.question_id AND g.is_current
  LEFT JOIN review_queue v ON v.institution_id = a.institution_id AND v.submission_id = a.submission_id
                          AND v.question_id = a.question_id AND v.resolved_at IS NULL
  LEFT JOIN LATERAL (
        SELECT lr.custom_id, lr.status, lr.deferred_reason
          FROM llm_requests lr
         WHERE lr.institution_id = a.institution_id AND lr.exam_day = a.exam_day AND lr.exam_id = a.exam_id
           AND lr.question_id = a.question_id AND lr.answer_sha256 = a.answer_sha256
           AND lr.status IN ('pending', 'queued', 'deferred')
         ORDER BY lr.version DESC
         LIMIT 1) r ON true;
