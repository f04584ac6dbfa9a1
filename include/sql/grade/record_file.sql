UPDATE batch_jobs SET provider_file_id = %(file_id)s, provider = %(provider)s
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s;
