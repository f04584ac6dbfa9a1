-- The day's answers whose current grade is a human one and whose model request had a suggestion:
-- (model score, human score) pairs for the agreement figures, live (not only as released). Routed work only: the
-- audit sample's human scores are the audit figures (gradeflow.release.audit).
SELECT g.question_id, g.max_points::float8 AS max_points, r.score::float8 AS model_score,
       g.score::float8 AS human_score, r.confidence::float8 AS confidence
  FROM grades g
  JOIN llm_requests r ON r.institution_id = g.institution_id AND r.custom_id = g.custom_id
 WHERE g.institution_id = %(inst)s AND g.exam_day = %(day)s AND g.is_current AND g.grader = 'human'
   AND r.score IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM review_items i WHERE i.institution_id = g.institution_id
                      AND i.review_id = g.review_id AND i.origin = 'audit')
 ORDER BY g.question_id, g.submission_id;
