-- A job's requests with what judging their lines needs: the question's max points and rubric items, and for
-- a rubric-item question one answer text of the request (identical answers share it: the evidence check).
SELECT r.custom_id, r.status, r.attempt, q.max_points, q.rubric_items,
       CASE WHEN q.rubric_items IS NOT NULL THEN
            (SELECT a.answer_text FROM answers a
              WHERE a.institution_id = r.institution_id AND a.exam_day = r.exam_day AND a.exam_id = r.exam_id
                AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256 LIMIT 1) END AS answer_text
  FROM llm_requests r
  JOIN questions q ON q.institution_id = r.institution_id AND q.exam_id = r.exam_id AND q.question_id = r.question_id
 WHERE r.institution_id = %(inst)s AND r.job_id = %(job_id)s;
