-- The representative answer text (first in FIFO order) of requests whose line is rebuilt (carry-over, retries).
SELECT r.custom_id,
       (SELECT a.answer_text
          FROM answers a
          JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id
         WHERE a.institution_id = r.institution_id AND a.exam_day = r.exam_day AND a.exam_id = r.exam_id
           AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256
         ORDER BY s.fifo_seq NULLS LAST, a.submission_id
         LIMIT 1) AS answer_text
  FROM llm_requests r
 WHERE r.institution_id = %(inst)s AND r.custom_id = ANY(%(custom_ids)s);
