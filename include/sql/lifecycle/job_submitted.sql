-- A prepared job was submitted (or reattached to the batch found by its fingerprint): its batch id and
-- the status the API gives the batch now. Only from a state that may move there (core.states.JOB_TRANSITIONS).
UPDATE batch_jobs SET provider_batch_id = %(batch_id)s, provider = %(provider)s, status = %(status)s,
       submitted_at = coalesce(submitted_at, now())
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s AND status = ANY(%(from_states)s);
