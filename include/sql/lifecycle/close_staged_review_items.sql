-- The staged reviews' items are reviewed: their open queue rows are resolved, their model requests are
-- marked reviewed (an audited one from graded: its model grade was released meanwhile; answers identical to
-- them that arrive later take the same human grade), and each
-- review row counts the answers it graded. Returns one row per staged review.
WITH queue AS (
    UPDATE review_queue v SET resolved_at = now(), review_item = i.review_id
      FROM stage_reviews s
      JOIN review_items i ON i.institution_id = %(inst)s AND i.review_id = s.review_id
     WHERE v.institution_id = %(inst)s AND v.resolved_at IS NULL
       AND (v.review_item = i.review_id OR (v.review_item IS NULL AND v.custom_id = i.custom_id))
    RETURNING 1
), item AS (
    UPDATE review_items i SET status = 'reviewed', reviews = i.reviews + 1, closed_at = now()
      FROM stage_reviews s
     WHERE i.institution_id = %(inst)s AND i.review_id = s.review_id
    RETURNING i.custom_id, i.origin
), req AS (
    UPDATE llm_requests r SET status = 'reviewed'
      FROM item
     WHERE r.institution_id = %(inst)s AND r.custom_id = item.custom_id
       AND (r.status = 'review' OR (r.status = 'graded' AND item.origin = 'audit'))
    RETURNING 1
), graded AS (
    SELECT g.review_line_id, count(*)::int AS answers
      FROM grades g JOIN stage_reviews s ON s.review_line_id = g.review_line_id
     WHERE g.institution_id = %(inst)s
     GROUP BY g.review_line_id
)
UPDATE reviews r SET answers_graded = g.answers
  FROM graded g
 WHERE r.institution_id = %(inst)s AND r.review_line_id = g.review_line_id
RETURNING r.source_row, r.review_id, r.answers_graded;
