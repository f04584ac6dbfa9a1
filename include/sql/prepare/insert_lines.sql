-- The ledger rows of one job, from the staged lines: estimates now, actuals when collected.
INSERT INTO batch_lines (institution_id, job_id, custom_id, exam_day, attempt, est_input_tokens, est_output_tokens)
SELECT %(inst)s, %(job_id)s, s.custom_id, r.exam_day, r.attempt, s.est_input_tokens, s.est_output_tokens
  FROM staged_lines s
  JOIN llm_requests r ON r.institution_id = %(inst)s AND r.custom_id = s.custom_id
ON CONFLICT (job_id, custom_id) DO NOTHING;
