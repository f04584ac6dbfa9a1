-- Every collected request (graded, in review or reviewed) of an institution over a window of exam days, as (confidence, count): the
-- workload side of the threshold table (no human score needed). A request routed for a reason that sends it
-- to review whatever the threshold (%(forced)s), or that has no model score (refused, cut, unparseable,
-- attempts exhausted), has a NULL confidence: reviewed at every threshold.
SELECT CASE WHEN r.score IS NULL OR coalesce(r.review_reason, '') = ANY(%(forced)s) THEN NULL
            ELSE round(coalesce(r.confidence, 0), 4)::float8 END AS confidence,
       count(*)::bigint AS requests
  FROM llm_requests r
 WHERE r.institution_id = %(inst)s AND r.exam_day BETWEEN %(first)s AND %(last)s
   AND r.status IN ('graded', 'review', 'reviewed')
 GROUP BY 1;
