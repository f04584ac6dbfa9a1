-- A job is born prepared (its input file written); a job written already (same fingerprint) is returned as it is.
INSERT INTO batch_jobs (institution_id, exam_day, night, wave, fingerprint, attempt, model, input_key, request_count,
                        est_input_tokens, est_output_tokens, input_bytes)
VALUES (%(inst)s, %(day)s, %(night)s, %(wave)s, %(fingerprint)s, %(attempt)s, %(model)s, %(input_key)s,
        %(request_count)s, %(est_input_tokens)s, %(est_output_tokens)s, %(input_bytes)s)
ON CONFLICT (institution_id, fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
RETURNING job_id, (xmax = 0) AS inserted;
