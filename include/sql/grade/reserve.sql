INSERT INTO openai_enqueued (job_id, tenant, model, tokens)
VALUES (%(job_id)s, %(tenant)s, %(model)s, %(tokens)s)
ON CONFLICT (job_id) DO UPDATE SET tokens = EXCLUDED.tokens, reserved_at = now(), released_at = NULL;
