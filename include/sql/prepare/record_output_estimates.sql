-- Each request's expected output tokens as admitted (from the staged ledger lines of its job): what the budget
-- charged for it, kept beside its exact input tokens.
UPDATE llm_requests r SET est_output_tokens = s.est_output_tokens
  FROM staged_lines s
 WHERE r.institution_id = %(inst)s AND r.custom_id = s.custom_id;
