SELECT job_id, institution_id, exam_day, night, wave, fingerprint, attempt, model, status, provider, provider_file_id,
       provider_batch_id, output_file_id, error_file_id, collected_at, est_input_tokens, est_output_tokens
  FROM batch_jobs
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s;
