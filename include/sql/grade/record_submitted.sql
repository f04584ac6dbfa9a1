UPDATE batch_jobs SET provider_batch_id = %(batch_id)s, provider = %(provider)s, status = %(status)s,
       submitted_at = coalesce(submitted_at, now())
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s;
