-- The day's Batch API jobs: estimated against actual tokens, cost and the times of each step.
SELECT job_id, attempt, status, model, request_count, est_input_tokens,
       input_tokens, output_tokens, cost_usd::float8 AS cost_usd,
       created_at, submitted_at, finished_at, collected_at
  FROM batch_jobs
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
 ORDER BY job_id;
