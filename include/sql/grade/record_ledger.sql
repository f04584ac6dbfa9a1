-- The ledger line of each collected request in this job: actual tokens, cost and outcome beside the estimate,
-- and where a good line's confidence came from (logprobs or self_report).
UPDATE batch_lines l
   SET input_tokens = c.input_tokens, output_tokens = c.output_tokens, cost_usd = c.cost_usd, outcome = c.outcome,
       confidence_source = c.confidence_source
  FROM collected_lines c
 WHERE l.institution_id = %(inst)s AND l.job_id = %(job_id)s AND l.custom_id = c.custom_id;
