-- The night's token ledger: estimated vs actual tokens and cost over every line sent this night.
SELECT sum(l.est_input_tokens)::bigint AS est_input_tokens, sum(l.est_output_tokens)::bigint AS est_output_tokens,
       sum(l.input_tokens)::bigint AS input_tokens, sum(l.output_tokens)::bigint AS output_tokens,
       sum(l.cost_usd) AS cost_usd, count(*) AS lines_sent
  FROM batch_lines l
  JOIN batch_jobs j ON j.job_id = l.job_id AND j.institution_id = l.institution_id
 WHERE l.institution_id = %(inst)s AND j.night = %(night)s;
