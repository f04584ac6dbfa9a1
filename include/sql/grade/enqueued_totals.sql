-- Tokens enqueued right now for the model: by the whole organisation and by this tenant (other jobs).
SELECT coalesce(sum(tokens), 0)::bigint AS org_tokens,
       coalesce(sum(tokens) FILTER (WHERE tenant = %(tenant)s), 0)::bigint AS tenant_tokens
  FROM openai_enqueued
 WHERE released_at IS NULL AND model = %(model)s AND job_id <> %(job_id)s;
