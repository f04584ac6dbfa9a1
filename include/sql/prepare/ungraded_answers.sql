-- The day's answers with no current grade and no open review, in FIFO order, with their question.
SELECT a.submission_id, a.question_id, a.exam_id, a.answer_text, a.answer_sha256, s.fifo_seq,
       q.qtype, q.max_points, q.answer_key, q.tolerance, q.prompt, q.rubric, q.reference_answer
  FROM answers a
  JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
 WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s
   AND q.qtype = ANY(%(qtypes)s)
   AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = a.institution_id
                      AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)
   AND NOT EXISTS (SELECT 1 FROM review_queue r WHERE r.institution_id = a.institution_id
                      AND r.submission_id = a.submission_id AND r.question_id = a.question_id AND r.resolved_at IS NULL)
 ORDER BY s.fifo_seq, a.question_id;
