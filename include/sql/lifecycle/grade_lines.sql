-- Every line collected from one job (staged in collected_lines), in one pass over its requests:
-- tokens and cost add up on the request across attempts (a retried line was paid for each time it ran),
-- and a good line moves its request queued -> graded with the model's score (and rubric-item decisions). One UPDATE, not two: each
-- request row is rewritten (and its indexes touched) once. Returns how many requests were graded.
WITH updated AS (
    UPDATE llm_requests r
       SET input_tokens = coalesce(r.input_tokens, 0) + c.input_tokens,
           output_tokens = coalesce(r.output_tokens, 0) + c.output_tokens,
           cost_usd = coalesce(r.cost_usd, 0) + c.cost_usd,
           status = CASE WHEN c.ok THEN 'graded' ELSE r.status END,
           score = CASE WHEN c.ok THEN c.score ELSE r.score END,
           raw_score = CASE WHEN c.ok THEN c.raw_score ELSE r.raw_score END,
           rationale = CASE WHEN c.ok THEN c.rationale ELSE r.rationale END,
           confidence = CASE WHEN c.ok THEN c.confidence ELSE r.confidence END,
           decisions = CASE WHEN c.ok THEN c.decisions ELSE r.decisions END,
           evidence_ok = CASE WHEN c.ok THEN c.evidence_ok ELSE r.evidence_ok END,
           confidence_source = CASE WHEN c.ok THEN c.confidence_source ELSE r.confidence_source END,
           error = CASE WHEN c.ok THEN NULL ELSE r.error END
      FROM collected_lines c
     WHERE r.institution_id = %(inst)s AND r.custom_id = c.custom_id AND r.job_id = %(job_id)s
       AND r.status = 'queued'
    RETURNING c.ok
)
SELECT count(*) FILTER (WHERE ok) AS graded FROM updated;
