-- Lines of a batch the API refused before running any of it (the organisation's enqueued-token cap):
-- back to pending for a later wave, and the attempt they were charged is given back (they never ran).
UPDATE llm_requests SET status = 'pending', job_id = NULL, error = %(reason)s, attempt = greatest(attempt - 1, 0)
 WHERE institution_id = %(inst)s AND custom_id = ANY(%(custom_ids)s) AND status = 'queued';
