-- Answers of the day inside the rerun scope: the whole day, one question, or one student.
CREATE TEMP TABLE rerun_scope ON COMMIT DROP AS
SELECT a.institution_id, a.submission_id, a.question_id, a.exam_id, a.exam_day, a.answer_sha256
  FROM answers a
  JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id
 WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s
   AND (%(scope)s = 'day'
        OR (%(scope)s = 'question' AND (a.question_id = %(value)s OR a.exam_id || '/' || a.question_id = %(value)s))
        OR (%(scope)s = 'student' AND s.student_id = %(value)s));
