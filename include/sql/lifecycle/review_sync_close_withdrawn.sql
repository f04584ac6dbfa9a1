-- Open items with nothing left waiting were withdrawn without a review (an admin rerun regraded their
-- answers): closed; a reviewer's score for them is refused. A routed item waits through its review_queue
-- rows; an audit item through the current model grades of its request (answers graded by the model).
UPDATE review_items i SET status = 'closed', closed_at = now()
 WHERE i.institution_id = %(inst)s AND i.exam_day = %(day)s AND i.status = 'open'
   AND CASE WHEN i.origin = 'audit'
            THEN NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = i.institution_id
                                AND g.custom_id = i.custom_id AND g.is_current AND g.grader = 'llm')
            ELSE NOT EXISTS (SELECT 1 FROM review_queue v WHERE v.institution_id = i.institution_id
                                AND v.review_item = i.review_id AND v.resolved_at IS NULL)
       END;
