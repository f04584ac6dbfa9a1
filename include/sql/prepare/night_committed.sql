-- Tokens the night has committed against the institution's budget: actual tokens of every collected line
-- (0 for lines that never ran), the estimate (input + expected output) of lines not collected yet.
SELECT coalesce(sum(CASE WHEN l.outcome IS NOT NULL THEN coalesce(l.input_tokens, 0) + coalesce(l.output_tokens, 0)
                         ELSE l.est_input_tokens + l.est_output_tokens END), 0)::bigint AS tokens
  FROM batch_lines l
  JOIN batch_jobs j ON j.job_id = l.job_id AND j.institution_id = l.institution_id
 WHERE l.institution_id = %(inst)s AND j.night = %(night)s;
