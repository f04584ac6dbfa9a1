-- Free-text answers of the given days with no grade, no open review and a non-blank text, merged into
-- one group per distinct (exam, question, normalised answer), with the first answer in FIFO order as its
-- representative: one query for the whole night (the requests are inserted in bulk afterwards). The grade and
-- review checks read the night's days only (a grade and a review carry their answer's exam day), not every
-- current grade and open review the institution has.
SELECT DISTINCT ON (a.exam_day, a.exam_id, a.question_id, a.answer_sha256)
       a.exam_day, a.exam_id, a.question_id, a.answer_sha256, a.answer_text, s.fifo_seq AS first_fifo_seq,
       count(*) OVER (PARTITION BY a.exam_day, a.exam_id, a.question_id, a.answer_sha256) AS answer_count
  FROM answers a
  JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
 WHERE a.institution_id = %(inst)s AND a.exam_day = ANY(%(days)s)
   AND q.qtype = ANY(%(qtypes)s)
   AND btrim(a.answer_text, E' \t\r\n\f\v') <> ''
   AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = a.institution_id AND g.exam_day = ANY(%(days)s)
                      AND g.exam_day = a.exam_day
                      AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)
   AND NOT EXISTS (SELECT 1 FROM review_queue r WHERE r.institution_id = a.institution_id AND r.exam_day = ANY(%(days)s)
                      AND r.exam_day = a.exam_day
                      AND r.submission_id = a.submission_id AND r.question_id = a.question_id AND r.resolved_at IS NULL)
 ORDER BY a.exam_day, a.exam_id, a.question_id, a.answer_sha256, s.fifo_seq;
