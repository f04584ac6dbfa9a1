-- The answers each staged review applies to, for every staged row at once:
-- those waiting in review for its item (linked to the item, or holding its model request and not linked
-- yet), those whose current grade came from the item (a second review is a new grade version), and, for an
-- audit item, those whose current grade is the model's grade of its request (released meanwhile).
CREATE TEMP TABLE stage_review_targets ON COMMIT DROP AS
SELECT s.source_row, v.submission_id, v.question_id, v.exam_day
  FROM stage_reviews s
  JOIN review_items i ON i.institution_id = %(inst)s AND i.review_id = s.review_id
  JOIN review_queue v ON v.institution_id = i.institution_id AND v.resolved_at IS NULL
   AND v.review_item = i.review_id
UNION
SELECT s.source_row, v.submission_id, v.question_id, v.exam_day
  FROM stage_reviews s
  JOIN review_items i ON i.institution_id = %(inst)s AND i.review_id = s.review_id
  JOIN review_queue v ON v.institution_id = i.institution_id AND v.resolved_at IS NULL
   AND v.review_item IS NULL AND v.custom_id = i.custom_id
UNION
SELECT s.source_row, g.submission_id, g.question_id, g.exam_day
  FROM stage_reviews s
  JOIN grades g ON g.institution_id = %(inst)s AND g.review_id = s.review_id AND g.is_current
UNION
SELECT s.source_row, g.submission_id, g.question_id, g.exam_day
  FROM stage_reviews s
  JOIN review_items i ON i.institution_id = %(inst)s AND i.review_id = s.review_id AND i.origin = 'audit'
  JOIN grades g ON g.institution_id = i.institution_id AND g.custom_id = i.custom_id AND g.is_current
   AND g.grader = 'llm';
