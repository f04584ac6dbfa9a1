-- Newly graded model requests whose score is above a share of max_points (what route_doubtful may route), with
-- one of their answers' text: gradeflow.lifecycle.route_doubtful screens the text for instruction-like content.
-- A request's grades carry its exam day: the lookup reads the day's grades only.
SELECT r.custom_id,
       (SELECT a.answer_text FROM answers a
         WHERE a.institution_id = r.institution_id AND a.exam_day = r.exam_day AND a.exam_id = r.exam_id
           AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256 LIMIT 1) AS answer_text
  FROM llm_requests r
  JOIN questions q ON q.institution_id = r.institution_id AND q.exam_id = r.exam_id AND q.question_id = r.question_id
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.version = %(version)s AND r.status = 'graded'
   AND (%(job_id)s::bigint IS NULL OR r.job_id = %(job_id)s::bigint)
   AND r.score > %(share)s::numeric * q.max_points
   AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = r.institution_id AND g.exam_day = r.exam_day
                      AND g.custom_id = r.custom_id);
