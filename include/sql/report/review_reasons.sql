-- Open human reviews of the day by reason (the detail when there is one, else the queue's reason).
SELECT coalesce(nullif(r.detail, ''), r.reason) AS reason, count(*)::int AS answers
  FROM review_queue r
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.resolved_at IS NULL
 GROUP BY 1
 ORDER BY 2 DESC, 1;
