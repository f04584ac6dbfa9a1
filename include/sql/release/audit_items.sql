-- The institution's audit items to date by status (open: waiting for a reviewer; reviewed; closed: withdrawn
-- by an admin rerun before a review).
SELECT status, count(*)::int AS items
  FROM review_items
 WHERE institution_id = %(inst)s AND origin = 'audit'
 GROUP BY status
 ORDER BY status;
