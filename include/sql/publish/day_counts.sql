-- The day's counts for reports and the conservation check: submissions, answers, each state, rejects,
-- released version and cost. Graded and in-review counts come from their own tables; the waiting states
-- (deferred, queued for the model, received and not yet prepared) from answer_lifecycle, in one pass.
-- %(waiting)s false skips that pass (its three counts are then 0): the release gate counts the waiting states
-- from the rows it validates (publish/answer_states), in the same snapshot, instead of evaluating the view twice.
WITH waiting AS (
    SELECT count(*) FILTER (WHERE state = 'deferred') AS deferred,
           count(*) FILTER (WHERE state = 'queued') AS pending_model,
           count(*) FILTER (WHERE state = 'received') AS received
      FROM answer_lifecycle
     WHERE %(waiting)s AND institution_id = %(inst)s AND exam_day = %(day)s
       AND state IN ('deferred', 'queued', 'received')
), graded AS (
    SELECT count(*) FILTER (WHERE grader = 'rule') AS graded_rule,
           count(*) FILTER (WHERE grader = 'llm') AS graded_llm,
           count(*) FILTER (WHERE grader = 'human') AS graded_human
      FROM grades
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND is_current
)
SELECT
  (SELECT count(*) FROM submissions WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS submissions,
  (SELECT count(*) FROM answers WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS answers,
  graded.graded_rule, graded.graded_llm, graded.graded_human,
  (SELECT count(*) FROM review_queue WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND resolved_at IS NULL) AS in_review,
  waiting.deferred, waiting.pending_model, waiting.received,
  (SELECT count(*) FROM rejected_rows WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS rejected_rows,
  (SELECT max(version) FROM releases WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS released_version,
  (SELECT coalesce(sum(cost_usd), 0)::float8 FROM batch_jobs WHERE institution_id = %(inst)s
      AND exam_day = %(day)s) AS cost_usd
  FROM waiting, graded;
