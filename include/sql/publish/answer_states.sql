-- One row per received answer of the day with its outcome: the frame the release gate validates.
-- grade_count, in_review and waiting are counted independently from their own tables, so an answer
-- counted twice (graded and in review, or graded twice) or not at all shows up as outcomes <> 1.
SELECT a.institution_id AS institution, a.exam_day::text AS exam_day, a.submission_id, a.question_id,
       q.max_points::float8 AS max_points,
       (SELECT count(*) FROM grades g WHERE g.institution_id = a.institution_id
           AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)::int
           AS grade_count,
       EXISTS (SELECT 1 FROM review_queue r WHERE r.institution_id = a.institution_id
           AND r.submission_id = a.submission_id AND r.question_id = a.question_id AND r.resolved_at IS NULL)
           AS in_review,
       l.state IN ('deferred', 'queued', 'received') AS waiting,
       l.state, l.pending_reason, l.review_reason,
       l.score::float8 AS score, l.grader, l.grade_id
  FROM answer_lifecycle l
  JOIN answers a ON a.institution_id = l.institution_id AND a.submission_id = l.submission_id
                AND a.question_id = l.question_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
 WHERE l.institution_id = %(inst)s AND l.exam_day = %(day)s
 ORDER BY a.submission_id, a.question_id;
