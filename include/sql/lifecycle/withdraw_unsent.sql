-- Work of the day written but never sent is withdrawn: the regrade writes it anew at the new
-- version, so nothing of the old version can still be submitted (and paid for) beside it.
WITH jobs AS (
    UPDATE batch_jobs SET status = 'superseded', collected_at = now()
     WHERE institution_id = %(inst)s AND exam_day = %(day)s AND provider_batch_id IS NULL AND collected_at IS NULL
    RETURNING job_id
)
UPDATE llm_requests r SET status = 'superseded'
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s
   AND (r.status IN ('pending', 'deferred') OR (r.status = 'queued' AND r.job_id IN (SELECT job_id FROM jobs)));
