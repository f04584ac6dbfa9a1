UPDATE llm_requests
   SET status = 'graded', score = %(score)s, raw_score = %(raw_score)s, rationale = %(rationale)s,
       confidence = %(confidence)s, input_tokens = %(input_tokens)s, output_tokens = %(output_tokens)s,
       cost_usd = %(cost_usd)s, error = NULL
 WHERE institution_id = %(inst)s AND custom_id = %(custom_id)s AND status = 'queued';
