-- One review item per distinct piece of work waiting in review (a model request: identical answers are
-- reviewed once; an answer in review without one is its own item). The review_id is random: nothing of
-- the student, the submission or the answer can be read or guessed from it.
INSERT INTO review_items (institution_id, exam_day, exam_id, question_id, work_key, custom_id, reason)
SELECT DISTINCT ON (coalesce(v.custom_id, 'queue:' || v.review_id))
       v.institution_id, v.exam_day, a.exam_id, v.question_id, coalesce(v.custom_id, 'queue:' || v.review_id),
       v.custom_id, v.reason
  FROM review_queue v
  JOIN answers a ON a.institution_id = v.institution_id AND a.submission_id = v.submission_id
                AND a.question_id = v.question_id
 WHERE v.institution_id = %(inst)s AND v.exam_day = %(day)s AND v.resolved_at IS NULL AND v.review_item IS NULL
 ORDER BY coalesce(v.custom_id, 'queue:' || v.review_id), v.review_id
-- An item that was closed or reviewed and has answers waiting again is reopened (its next review is a
-- new grade version for every answer of it). An audit item whose work is routed to review after all (an admin
-- asked for a human grade) becomes a routed item with the work's reason.
ON CONFLICT (institution_id, work_key) DO UPDATE
   SET status = 'open', closed_at = NULL, origin = 'routed',
       reason = CASE WHEN review_items.origin = 'audit' THEN EXCLUDED.reason ELSE review_items.reason END
 WHERE review_items.status <> 'open' OR review_items.origin = 'audit';
