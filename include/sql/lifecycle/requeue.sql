-- Lines that did not finish for a passing reason (expired, cancelled, server error, token cap) go back
-- to pending: the next wave sends only them, in a new batch, after this one is collected.
UPDATE llm_requests SET status = 'pending', job_id = NULL, error = %(reason)s
 WHERE institution_id = %(inst)s AND custom_id = ANY(%(custom_ids)s) AND status = 'queued';
