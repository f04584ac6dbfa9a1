-- Transition deferred -> queued (pending a job): a new night takes deferred work first.
UPDATE llm_requests
   SET status = 'pending', deferred_reason = NULL, nights_deferred = nights_deferred + 1
 WHERE institution_id = %(inst)s AND custom_id = ANY(%(custom_ids)s) AND status = 'deferred';
