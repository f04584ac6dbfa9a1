-- Transition queued -> in_review: these model requests (and every answer they stand for) wait for a
-- human, with a reason from the closed set review_reasons and the free-text detail. Their answers and grades
-- are looked up on the requests' own exam days (an answer's grade carries its exam day), taken once from the
-- updated requests: the lookups read those days' rows, not the institution's history.
WITH req AS (
    UPDATE llm_requests SET status = 'review', review_reason = %(reason)s, error = %(detail)s,
                            deferred_reason = NULL
     WHERE institution_id = %(inst)s AND custom_id = ANY(%(custom_ids)s)
       AND status IN ('pending', 'queued', 'deferred', 'graded')
    RETURNING custom_id, exam_day, exam_id, question_id, answer_sha256
)
INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason, detail, custom_id)
SELECT %(inst)s, a.submission_id, a.question_id, a.exam_day, %(reason)s, %(detail)s, req.custom_id
  FROM req
  JOIN answers a ON a.institution_id = %(inst)s AND a.exam_day = req.exam_day AND a.exam_id = req.exam_id
                AND a.question_id = req.question_id AND a.answer_sha256 = req.answer_sha256
                AND a.exam_day = ANY (ARRAY(SELECT DISTINCT exam_day FROM req))
 WHERE NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = %(inst)s AND g.exam_day = a.exam_day
                      AND g.exam_day = ANY (ARRAY(SELECT DISTINCT exam_day FROM req))
                      AND g.submission_id = a.submission_id
                      AND g.question_id = a.question_id AND g.is_current)
ON CONFLICT (institution_id, submission_id, question_id) WHERE resolved_at IS NULL DO NOTHING;
