-- The answers a reviewer's score for this item applies to: those waiting in review for it (linked to the
-- item, or holding its model request and not linked yet), and those whose current grade came from it (a
-- second review is a new grade version). Answers regraded since (an admin rerun) are not touched.
SELECT v.submission_id, v.question_id, v.exam_day
  FROM review_queue v
  JOIN review_items i ON i.institution_id = v.institution_id AND i.review_id = %(review_id)s
 WHERE v.institution_id = %(inst)s AND v.resolved_at IS NULL
   AND (v.review_item = i.review_id OR (v.review_item IS NULL AND v.custom_id = i.custom_id))
UNION
SELECT g.submission_id, g.question_id, g.exam_day
  FROM grades g
 WHERE g.institution_id = %(inst)s AND g.review_id = %(review_id)s AND g.is_current
ORDER BY 1, 2;
