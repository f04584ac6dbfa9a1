-- The day's counts for reports and the conservation check: submissions, answers, each state, rejects,
-- released version and cost. Graded and in-review counts come from their own tables; the waiting states
-- (deferred, queued for the model, received and not yet prepared) from answer_lifecycle.
SELECT
  (SELECT count(*) FROM submissions WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS submissions,
  (SELECT count(*) FROM answers WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS answers,
  (SELECT count(*) FROM grades WHERE institution_id = %(inst)s AND exam_day = %(day)s AND is_current
      AND grader = 'rule') AS graded_rule,
  (SELECT count(*) FROM grades WHERE institution_id = %(inst)s AND exam_day = %(day)s AND is_current
      AND grader = 'llm') AS graded_llm,
  (SELECT count(*) FROM grades WHERE institution_id = %(inst)s AND exam_day = %(day)s AND is_current
      AND grader = 'human') AS graded_human,
  (SELECT count(*) FROM review_queue WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND resolved_at IS NULL) AS in_review,
  (SELECT count(*) FROM answer_lifecycle WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND state = 'deferred') AS deferred,
  (SELECT count(*) FROM answer_lifecycle WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND state = 'queued') AS pending_model,
  (SELECT count(*) FROM answer_lifecycle WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND state = 'received') AS received,
  (SELECT count(*) FROM rejected_rows WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS rejected_rows,
  (SELECT max(version) FROM releases WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS released_version,
  (SELECT coalesce(sum(cost_usd), 0)::float8 FROM batch_jobs WHERE institution_id = %(inst)s
      AND exam_day = %(day)s) AS cost_usd;
