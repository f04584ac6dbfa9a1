-- One row per received answer of the day with its outcome: the frame the release gate validates.
SELECT a.institution_id AS institution, a.exam_day::text AS exam_day, a.submission_id, a.question_id,
       q.max_points::float8 AS max_points,
       (SELECT count(*) FROM grades g WHERE g.institution_id = a.institution_id
           AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)::int
           AS grade_count,
       EXISTS (SELECT 1 FROM review_queue r WHERE r.institution_id = a.institution_id
           AND r.submission_id = a.submission_id AND r.question_id = a.question_id AND r.resolved_at IS NULL)
           AS in_review,
       g.score::float8 AS score, g.grader, g.grade_id
  FROM answers a
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
  LEFT JOIN grades g ON g.institution_id = a.institution_id AND g.submission_id = a.submission_id
                    AND g.question_id = a.question_id AND g.is_current
 WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s
 ORDER BY a.submission_id, a.question_id;
