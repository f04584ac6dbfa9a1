-- Reserve the job's input tokens under the organisation's cap and the tenant's share (under one lock).
SELECT reserved, org_tokens, tenant_tokens
  FROM gradeflow_reserve_enqueued(%(job_id)s, %(tenant)s, %(model)s, %(tokens)s, %(cap)s, %(share_cap)s);
