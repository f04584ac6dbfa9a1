UPDATE llm_requests
   SET input_tokens = %(input_tokens)s, output_tokens = %(output_tokens)s, cost_usd = %(cost_usd)s
 WHERE institution_id = %(inst)s AND custom_id = %(custom_id)s;
