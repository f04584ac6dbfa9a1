-- Open items with nothing left waiting were withdrawn without a review (an admin rerun regraded their
-- answers): closed; a reviewer's score for them is refused.
UPDATE review_items i SET status = 'closed', closed_at = now()
 WHERE i.institution_id = %(inst)s AND i.exam_day = %(day)s AND i.status = 'open'
   AND NOT EXISTS (SELECT 1 FROM review_queue v WHERE v.institution_id = i.institution_id
                      AND v.review_item = i.review_id AND v.resolved_at IS NULL);
