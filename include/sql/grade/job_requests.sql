SELECT r.custom_id, r.status, r.attempt, q.max_points
  FROM llm_requests r
  JOIN questions q ON q.institution_id = r.institution_id AND q.exam_id = r.exam_id AND q.question_id = r.question_id
 WHERE r.institution_id = %(inst)s AND r.job_id = %(job_id)s;
