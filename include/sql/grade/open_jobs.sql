-- The day's batch jobs not yet collected, oldest first.
SELECT job_id, fingerprint, attempt, model, input_key, request_count, est_input_tokens, status,
       openai_file_id, openai_batch_id
  FROM batch_jobs
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND collected_at IS NULL
 ORDER BY job_id;
