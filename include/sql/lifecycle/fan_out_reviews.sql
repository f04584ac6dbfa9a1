-- Answers that match a model request already in review (identical answers were merged) join it there.
INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason, detail, custom_id)
SELECT r.institution_id, a.submission_id, a.question_id, a.exam_day, r.review_reason, r.error, r.custom_id
  FROM llm_requests r
  JOIN answers a ON a.institution_id = r.institution_id AND a.exam_day = r.exam_day AND a.exam_id = r.exam_id
                AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.status = 'review'
   AND r.version = %(version)s
   AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = a.institution_id
                      AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)
ON CONFLICT (institution_id, submission_id, question_id) WHERE resolved_at IS NULL DO NOTHING;
