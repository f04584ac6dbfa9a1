-- Transition queued -> graded for every good line collected from one job (staged in collected_lines).
UPDATE llm_requests r
   SET status = 'graded', score = c.score, raw_score = c.raw_score, rationale = c.rationale,
       confidence = c.confidence, error = NULL
  FROM collected_lines c
 WHERE c.ok AND r.institution_id = %(inst)s AND r.custom_id = c.custom_id AND r.job_id = %(job_id)s
   AND r.status = 'queued';
