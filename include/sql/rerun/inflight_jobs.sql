-- Jobs of the day that were submitted and not collected: their results may still arrive.
SELECT job_id, provider_batch_id, status FROM batch_jobs
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND provider_batch_id IS NOT NULL AND collected_at IS NULL;
