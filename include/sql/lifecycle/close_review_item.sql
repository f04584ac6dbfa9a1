-- The item is reviewed: its open queue rows are resolved, its model request is marked reviewed (answers
-- identical to it that arrive later take the same human grade), and the review row counts its answers.
WITH queue AS (
    UPDATE review_queue v SET resolved_at = now(), review_item = i.review_id
      FROM review_items i
     WHERE v.institution_id = %(inst)s AND v.resolved_at IS NULL
       AND i.institution_id = v.institution_id AND i.review_id = %(review_id)s
       AND (v.review_item = i.review_id OR (v.review_item IS NULL AND v.custom_id = i.custom_id))
    RETURNING 1
), item AS (
    UPDATE review_items SET status = 'reviewed', reviews = reviews + 1, closed_at = now()
     WHERE institution_id = %(inst)s AND review_id = %(review_id)s
    RETURNING custom_id
), req AS (
    UPDATE llm_requests SET status = 'reviewed'
     WHERE institution_id = %(inst)s AND custom_id = (SELECT custom_id FROM item) AND status = 'review'
    RETURNING 1
)
UPDATE reviews SET answers_graded = %(answers)s
 WHERE institution_id = %(inst)s AND review_line_id = %(review_line_id)s
RETURNING (SELECT count(*) FROM queue) AS queue_rows, (SELECT count(*) FROM req) AS requests;
