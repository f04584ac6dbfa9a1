-- An institution's token ledger for one night: estimated vs actual tokens and cost, lines sent, waves,
-- and how many requests needed how many attempts.
SELECT sum(l.est_input_tokens)::bigint AS est_input_tokens,
       sum(l.est_output_tokens)::bigint AS est_output_tokens,
       coalesce(sum(l.input_tokens), 0)::bigint AS input_tokens,
       coalesce(sum(l.output_tokens), 0)::bigint AS output_tokens,
       coalesce(sum(l.cost_usd), 0)::float8 AS cost_usd,
       count(*) AS lines_sent,
       count(*) FILTER (WHERE l.outcome IS NOT NULL) AS lines_collected,
       (SELECT max(wave) FROM batch_jobs WHERE institution_id = %(inst)s AND night = %(night)s) AS waves,
       (SELECT count(*) FROM batch_jobs WHERE institution_id = %(inst)s AND night = %(night)s) AS jobs,
       (SELECT jsonb_object_agg(attempt, n) FROM (
            SELECT attempt, count(*) AS n FROM llm_requests
             WHERE institution_id = %(inst)s AND custom_id IN (
                   SELECT b.custom_id FROM batch_lines b JOIN batch_jobs bj ON bj.job_id = b.job_id
                    WHERE bj.institution_id = %(inst)s AND bj.night = %(night)s)
             GROUP BY attempt) a) AS attempts
  FROM batch_lines l
  JOIN batch_jobs j ON j.job_id = l.job_id AND j.institution_id = l.institution_id
 WHERE l.institution_id = %(inst)s AND j.night = %(night)s;
