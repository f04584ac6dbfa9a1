UPDATE llm_requests
   SET input_tokens = coalesce(input_tokens, 0) + %(input_tokens)s,
       output_tokens = coalesce(output_tokens, 0) + %(output_tokens)s,
       cost_usd = coalesce(cost_usd, 0) + %(cost_usd)s
 WHERE institution_id = %(inst)s AND custom_id = %(custom_id)s;
