-- Answers of a release graded by a human that also had a model suggestion (the model's clamped score), routed to
-- review (the audit sample's human scores are the audit figures: gradeflow.release.audit).
SELECT question_id, max_points::float8 AS max_points, suggested_score::float8 AS model_score,
       score::float8 AS human_score, confidence::float8 AS confidence
  FROM release_results
 WHERE release_id = %(release_id)s AND institution_id = %(inst)s AND grader = 'human'
   AND suggested_score IS NOT NULL AND origin IS DISTINCT FROM 'audit'
 ORDER BY exam_id, question_id, submission_id;
