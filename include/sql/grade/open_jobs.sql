-- The institution's batch jobs not yet collected, from any night or exam day, oldest first: a batch
-- still running past a deadline is collected by the next run that sees it finished.
SELECT job_id, exam_day, night, wave, fingerprint, attempt, model, input_key, request_count, est_input_tokens,
       est_output_tokens, status, provider, provider_file_id, provider_batch_id
  FROM batch_jobs
 WHERE institution_id = %(inst)s AND collected_at IS NULL
 ORDER BY job_id;
