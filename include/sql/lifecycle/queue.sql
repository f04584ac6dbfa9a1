-- Transition pending -> queued: the requests staged for a written batch job (prepare/create_lines_stage.sql's
-- staged_lines) are in it (one more attempt and send each), with the output tokens the budget charged for each
-- kept beside its exact input tokens: one rewrite of each request row, not one for the status and one for the
-- estimate.
UPDATE llm_requests r
   SET job_id = %(job_id)s, status = 'queued', attempt = r.attempt + 1, sends = r.sends + 1,
       est_output_tokens = s.est_output_tokens
  FROM staged_lines s
 WHERE r.institution_id = %(inst)s AND r.custom_id = s.custom_id AND r.status = 'pending';
