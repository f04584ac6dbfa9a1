-- Why the release gate found answers without exactly one outcome, for the gate's alert: answers with none
-- (lost) or several (a current grade and an open review, or two grades), by question, and the work still
-- open for the day (requests, unsent jobs, running batches) and files rejected at ingest.
WITH per_answer AS (
    SELECT l.exam_id, l.question_id,
           (SELECT count(*) FROM grades g WHERE g.institution_id = l.institution_id
               AND g.submission_id = l.submission_id AND g.question_id = l.question_id AND g.is_current)
         + (SELECT count(*) FROM review_queue r WHERE r.institution_id = l.institution_id
               AND r.submission_id = l.submission_id AND r.question_id = l.question_id AND r.resolved_at IS NULL)
         + (l.state IN ('deferred', 'queued', 'received'))::int AS outcomes
      FROM answer_lifecycle l
     WHERE l.institution_id = %(inst)s AND l.exam_day = %(day)s
)
SELECT
  (SELECT count(*) FROM per_answer WHERE outcomes = 0) AS unaccounted,
  (SELECT count(*) FROM per_answer WHERE outcomes > 1) AS counted_twice,
  (SELECT coalesce(json_agg(q ORDER BY q.answers DESC, q.question), '[]'::json) FROM (
      SELECT exam_id || '/' || question_id AS question, count(*) AS answers
        FROM per_answer WHERE outcomes <> 1
       GROUP BY exam_id, question_id ORDER BY count(*) DESC LIMIT 10) q) AS by_question,
  (SELECT count(*) FROM llm_requests WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND status = 'pending') AS requests_pending,
  (SELECT count(*) FROM llm_requests WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND status = 'queued') AS requests_queued,
  (SELECT count(*) FROM batch_jobs WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND provider_batch_id IS NULL AND collected_at IS NULL) AS jobs_not_submitted,
  (SELECT coalesce(json_agg(json_build_object('batch_id', provider_batch_id, 'status', status) ORDER BY job_id),
                   '[]'::json)
     FROM batch_jobs WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND provider_batch_id IS NOT NULL AND collected_at IS NULL) AS batches_running,
  (SELECT coalesce(json_agg(DISTINCT file_name), '[]'::json) FROM ingested_files
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND status = 'rejected') AS files_rejected;
