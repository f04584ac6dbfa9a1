-- Tokens and cost add up across attempts: a retried line was paid for each time it ran.
UPDATE llm_requests
   SET status = 'graded', score = %(score)s, raw_score = %(raw_score)s, rationale = %(rationale)s,
       confidence = %(confidence)s, input_tokens = coalesce(input_tokens, 0) + %(input_tokens)s,
       output_tokens = coalesce(output_tokens, 0) + %(output_tokens)s,
       cost_usd = coalesce(cost_usd, 0) + %(cost_usd)s, error = NULL
 WHERE institution_id = %(inst)s AND custom_id = %(custom_id)s AND status = 'queued';
