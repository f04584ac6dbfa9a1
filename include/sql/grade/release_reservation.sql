UPDATE openai_enqueued SET released_at = now()
 WHERE job_id = %(job_id)s AND tenant = %(tenant)s AND released_at IS NULL;
