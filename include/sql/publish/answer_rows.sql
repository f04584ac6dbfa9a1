-- One row per received answer of the day with its outcome: the rows the release gate validates (their
-- columns as the frame GX checks, all of them through the state fingerprint) and the release copies.
-- grade_count, in_review and waiting are counted independently from their own tables, so an answer
-- counted twice (graded and in review, or graded twice) or not at all shows up as outcomes <> 1.
-- Set-based: each table is read once for the day and joined by hash (no query per answer).
-- The last four columns are what the release writes besides (publish/insert_release_results): the exam, the
-- question type, and points and score as stored (numeric); the fingerprint and the gate's frame do not read them.
WITH g AS (
    SELECT submission_id, question_id, count(*)::int AS grade_count
      FROM grades
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND is_current
     GROUP BY submission_id, question_id
), v AS (
    SELECT DISTINCT submission_id, question_id
      FROM review_queue
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND resolved_at IS NULL
)
SELECT l.institution_id AS institution, l.exam_day::text AS exam_day, l.submission_id, l.question_id,
       q.max_points::float8 AS max_points,
       coalesce(g.grade_count, 0) AS grade_count,
       v.submission_id IS NOT NULL AS in_review,
       l.state IN ('deferred', 'queued', 'received') AS waiting,
       l.state, l.pending_reason, l.review_reason,
       l.score::float8 AS score, l.grader, l.grade_id,
       l.exam_id, q.qtype AS question_type, q.max_points AS released_max_points, l.score AS released_score
  FROM answer_lifecycle l
  JOIN questions q ON q.institution_id = l.institution_id AND q.exam_id = l.exam_id AND q.question_id = l.question_id
  LEFT JOIN g ON g.submission_id = l.submission_id AND g.question_id = l.question_id
  LEFT JOIN v ON v.submission_id = l.submission_id AND v.question_id = l.question_id
 WHERE l.institution_id = %(inst)s AND l.exam_day = %(day)s
