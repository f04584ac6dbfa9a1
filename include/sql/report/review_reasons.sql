-- Open human reviews of the day by reason (the closed set in review_reasons), with its description.
SELECT r.reason, coalesce(rr.description, r.reason) AS description, count(*)::int AS answers
  FROM review_queue r
  LEFT JOIN review_reasons rr ON rr.code = r.reason
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.resolved_at IS NULL
 GROUP BY r.reason, rr.description
 ORDER BY 3 DESC, 1;
