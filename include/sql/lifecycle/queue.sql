-- Transition pending -> queued: the requests are in a written batch job (one more attempt and send each).
UPDATE llm_requests SET job_id = %(job_id)s, status = 'queued', attempt = attempt + 1, sends = sends + 1
 WHERE institution_id = %(inst)s AND custom_id = ANY(%(custom_ids)s) AND status = 'pending';
