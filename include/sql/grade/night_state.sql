-- Where the night stands: lines waiting for a retry wave, lines with the model, the last wave and when
-- lines were last sent back (the backoff runs from there).
SELECT (SELECT count(*) FROM llm_requests WHERE institution_id = %(inst)s AND status = 'pending'
           AND exam_day <= %(night)s) AS pending,
       (SELECT max(attempt) FROM llm_requests WHERE institution_id = %(inst)s AND status = 'pending'
           AND exam_day <= %(night)s) AS max_attempt,
       (SELECT count(*) FROM llm_requests WHERE institution_id = %(inst)s AND status = 'queued') AS queued,
       (SELECT max(wave) FROM batch_jobs WHERE institution_id = %(inst)s AND night = %(night)s) AS last_wave,
       (SELECT max(collected_at) FROM batch_jobs WHERE institution_id = %(inst)s AND requeued_lines > 0)
           AS last_requeue_at;
