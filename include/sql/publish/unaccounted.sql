-- Why answers of the day have no outcome yet (no current grade, no open review): for the gate's alert.
WITH open_answers AS (
    SELECT a.exam_id, a.question_id
      FROM answers a
     WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s
       AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = a.institution_id
                          AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)
       AND NOT EXISTS (SELECT 1 FROM review_queue r WHERE r.institution_id = a.institution_id
                          AND r.submission_id = a.submission_id AND r.question_id = a.question_id
                          AND r.resolved_at IS NULL)
)
SELECT
  (SELECT count(*) FROM open_answers) AS unaccounted,
  (SELECT coalesce(json_agg(q ORDER BY q.answers DESC, q.question), '[]'::json) FROM (
      SELECT exam_id || '/' || question_id AS question, count(*) AS answers
        FROM open_answers GROUP BY exam_id, question_id ORDER BY count(*) DESC LIMIT 10) q) AS by_question,
  (SELECT count(*) FROM llm_requests WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND status = 'pending') AS requests_pending,
  (SELECT count(*) FROM llm_requests WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND status = 'queued') AS requests_queued,
  (SELECT count(*) FROM batch_jobs WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND openai_batch_id IS NULL AND collected_at IS NULL) AS jobs_not_submitted,
  (SELECT coalesce(json_agg(json_build_object('batch_id', openai_batch_id, 'status', status) ORDER BY job_id),
                   '[]'::json)
     FROM batch_jobs WHERE institution_id = %(inst)s AND exam_day = %(day)s
      AND openai_batch_id IS NOT NULL AND collected_at IS NULL) AS batches_running,
  (SELECT coalesce(json_agg(DISTINCT file_name), '[]'::json) FROM ingested_files
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND status = 'rejected') AS files_rejected;
