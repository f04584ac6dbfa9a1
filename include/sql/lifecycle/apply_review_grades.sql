-- Answers identical to one a human already graded (same question, same normalised answer, same grading
-- version) that arrived later take the item's latest human grade (and its ticked rubric items): merged work
-- is graded once.
INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, model,
                    custom_id, attempt, version, rationale, confidence, reviewer, review_id, review_line_id,
                    decisions)
SELECT a.institution_id, a.submission_id, a.question_id, a.exam_day, rv.score, q.max_points, 'human', NULL,
       r.custom_id, i.reviews, %(version)s, rv.comment, NULL, rv.reviewer, i.review_id, rv.review_line_id,
       rv.decisions
  FROM llm_requests r
  JOIN review_items i ON i.institution_id = r.institution_id AND i.custom_id = r.custom_id AND i.status = 'reviewed'
  JOIN LATERAL (SELECT * FROM reviews x WHERE x.institution_id = i.institution_id AND x.review_id = i.review_id
                 ORDER BY x.review_line_id DESC LIMIT 1) rv ON true
  JOIN answers a ON a.institution_id = r.institution_id AND a.exam_day = r.exam_day AND a.exam_id = r.exam_id
                AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.status = 'reviewed' AND r.version = %(version)s
   AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = a.institution_id
                      AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)
   AND NOT EXISTS (SELECT 1 FROM review_queue v WHERE v.institution_id = a.institution_id
                      AND v.submission_id = a.submission_id AND v.question_id = a.question_id AND v.resolved_at IS NULL)
ON CONFLICT (institution_id, submission_id, question_id) WHERE is_current DO NOTHING;
