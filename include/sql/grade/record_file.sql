UPDATE batch_jobs SET openai_file_id = %(file_id)s
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s;
