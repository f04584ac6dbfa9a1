SELECT status FROM batch_jobs WHERE institution_id = %(inst)s AND job_id = %(job_id)s;
