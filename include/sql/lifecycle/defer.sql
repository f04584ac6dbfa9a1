-- Transition -> deferred: model work that does not fit tonight (budget or the API's enqueued-token cap)
-- waits for the next night, first in line; it is never sent to human review for that.
UPDATE llm_requests
   SET status = 'deferred', deferred_reason = %(reason)s, deferred_at = coalesce(deferred_at, now()),
       job_id = NULL
 WHERE institution_id = %(inst)s AND custom_id = ANY(%(custom_ids)s) AND status IN ('pending', 'deferred');
