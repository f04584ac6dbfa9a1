-- Tokens and cost add up across attempts on the request: a retried line was paid for each time it ran.
UPDATE llm_requests r
   SET input_tokens = coalesce(r.input_tokens, 0) + c.input_tokens,
       output_tokens = coalesce(r.output_tokens, 0) + c.output_tokens,
       cost_usd = coalesce(r.cost_usd, 0) + c.cost_usd
  FROM collected_lines c
 WHERE r.institution_id = %(inst)s AND r.custom_id = c.custom_id AND r.job_id = %(job_id)s AND r.status = 'queued';
