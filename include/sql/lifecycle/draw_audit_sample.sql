-- The audit sample of a day (docs/review-round-trip.md, "The audit sample"): birth of open review items of origin
-- 'audit' for a random sample of the model requests whose grades are released without a human, stratified per
-- question: of each question's N requests (audited ones included), max(audit_min_per_question,
-- ceil(audit_rate * N)), at most N, are audited. The draw is reproducible: a request's place in the draw is
-- md5(institution / exam day / custom_id) (custom_id is deterministic), lowest first. It is idempotent: requests
-- audited already count towards the target, so a rerun on the same grades draws nothing; grades collected later
-- (a late batch) top each question up to its target from the requests not audited yet. Only the day's current
-- grading version: after an admin rerun the new version's grades are sampled anew. Never rule grades (no
-- request) nor work routed to review (its request is not 'graded'). The answers stay graded (llm): an audit item
-- has no review_queue row. Returns one row per item drawn.
WITH version AS (
    SELECT coalesce(max((details ->> 'version')::int), 1) AS v
      FROM audit_log
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND action = 'rerun_reset'
), eligible AS (
    SELECT r.custom_id, r.exam_id, r.question_id,
           md5(r.institution_id || '/' || r.exam_day::text || '/' || r.custom_id) AS draw_key
      FROM llm_requests r, version
     WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.status = 'graded' AND r.version = version.v
       AND EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = r.institution_id AND g.custom_id = r.custom_id
                      AND g.is_current AND g.grader = 'llm')
       AND NOT EXISTS (SELECT 1 FROM review_items i WHERE i.institution_id = r.institution_id
                          AND i.work_key = r.custom_id)
), audited AS (
    SELECT i.exam_id, i.question_id, count(*)::int AS n
      FROM review_items i
      JOIN llm_requests r ON r.institution_id = i.institution_id AND r.custom_id = i.custom_id, version
     WHERE i.institution_id = %(inst)s AND i.exam_day = %(day)s AND i.origin = 'audit' AND r.version = version.v
     GROUP BY i.exam_id, i.question_id
), target AS (
    SELECT e.exam_id, e.question_id,
           least(count(*) + coalesce(max(a.n), 0),
                 greatest(%(min_per_question)s::int, ceil(%(rate)s::numeric * (count(*) + coalesce(max(a.n), 0)))))
           - coalesce(max(a.n), 0) AS draw
      FROM eligible e
      LEFT JOIN audited a ON a.exam_id = e.exam_id AND a.question_id = e.question_id
     GROUP BY e.exam_id, e.question_id
), ranked AS (
    SELECT e.*, row_number() OVER (PARTITION BY e.exam_id, e.question_id ORDER BY e.draw_key, e.custom_id) AS place
      FROM eligible e
)
INSERT INTO review_items (institution_id, exam_day, exam_id, question_id, work_key, custom_id, reason, origin)
SELECT %(inst)s, %(day)s, k.exam_id, k.question_id, k.custom_id, k.custom_id, NULL, 'audit'
  FROM ranked k
  JOIN target t ON t.exam_id = k.exam_id AND t.question_id = k.question_id
 WHERE k.place <= t.draw
 ORDER BY k.exam_id, k.question_id, k.place
ON CONFLICT (institution_id, work_key) DO NOTHING
RETURNING exam_id, question_id;
