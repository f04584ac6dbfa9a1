-- The release's reading of the day's outcome rows: publish/answer_rows' rows and columns (so publish/row_hash
-- gives each row the same hash, and their sum the state fingerprint the gate validated), plus the current
-- grade's columns the release copies (answer_lifecycle's grade_* columns, migration 030).
-- Read once: the view's one join of the day's current grades and open reviews gives both the grade's columns and
-- grade_count / in_review. publish/answer_rows counts those apart from the view (the gate's independent check
-- that each answer has exactly one outcome); here they are the same numbers, because an answer has at most one
-- current grade (unique index grades_one_current) and at most one open review (review_queue_open). Should they
-- ever differ, the row count or the hashes differ and the release refuses (publish.release): nothing released
-- that the gate did not validate.
SELECT l.institution_id AS institution, l.exam_day::text AS exam_day, l.submission_id, l.question_id,
       q.max_points::float8 AS max_points,
       (l.grade_id IS NOT NULL)::int AS grade_count,
       l.review_id IS NOT NULL AS in_review,
       l.state IN ('deferred', 'queued', 'received') AS waiting,
       l.state, l.pending_reason, l.review_reason,
       l.score::float8 AS score, l.grader, l.grade_id,
       l.exam_id, q.qtype AS question_type, q.max_points AS released_max_points, l.score AS released_score,
       l.grade_model, l.grade_confidence, l.grade_rationale, l.grade_version, l.grade_decisions, l.grade_custom_id,
       l.grade_review_id
  FROM answer_lifecycle l
  JOIN questions q ON q.institution_id = l.institution_id AND q.exam_id = l.exam_id AND q.question_id = l.question_id
 WHERE l.institution_id = %(inst)s AND l.exam_day = %(day)s
