-- Human-scored model grades of an institution over a window of exam days, for the threshold table and the
-- per-criterion agreement (gradeflow.release.calibration, docs/review-round-trip.md "Choosing min_confidence"):
-- every model request with a score and a confidence that a reviewer scored through any review item of it
-- (routed for low confidence, an audit, or whatever else names the request), with the latest review's score
-- and ticks. Requests routed for a reason that sends them to review whatever the threshold (%(forced)s: an
-- out-of-range score, an evidence quote not in the answer, suspected injection) are left out: no
-- min_confidence would release them. One row per request (its newest review).
SELECT DISTINCT ON (r.custom_id)
       r.custom_id, r.exam_day, r.exam_id, r.question_id, q.max_points::float8 AS max_points,
       r.score::float8 AS model_score, v.score::float8 AS human_score, r.confidence::float8 AS confidence,
       i.reason, r.decisions AS model_decisions, v.decisions AS human_decisions
  FROM llm_requests r
  JOIN questions q ON q.institution_id = r.institution_id AND q.exam_id = r.exam_id AND q.question_id = r.question_id
  JOIN review_items i ON i.institution_id = r.institution_id AND i.custom_id = r.custom_id
  JOIN reviews v ON v.institution_id = i.institution_id AND v.review_id = i.review_id
 WHERE r.institution_id = %(inst)s AND r.exam_day BETWEEN %(first)s AND %(last)s
   AND r.score IS NOT NULL AND r.confidence IS NOT NULL AND r.status <> 'superseded'
   AND NOT (coalesce(r.review_reason, '') = ANY(%(forced)s)) AND NOT (i.reason = ANY(%(forced)s))
 ORDER BY r.custom_id, v.review_line_id DESC;
