INSERT INTO batch_jobs (institution_id, exam_day, fingerprint, attempt, model, input_key, request_count,
                        est_input_tokens)
VALUES (%(inst)s, %(day)s, %(fingerprint)s, %(attempt)s, %(model)s, %(input_key)s, %(request_count)s,
        %(est_input_tokens)s)
ON CONFLICT (fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
RETURNING job_id;
