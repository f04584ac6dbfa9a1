UPDATE batch_jobs
   SET collected_at = now(), input_tokens = %(input_tokens)s, output_tokens = %(output_tokens)s,
       cost_usd = %(cost_usd)s, requeued_lines = %(requeued)s
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s;
