-- Model requests of the day: estimated tokens (llm_requests.est_tokens) against the actual input + output
-- tokens of the requests that came back, by request status.
SELECT status, count(*)::int AS requests, sum(answer_count)::int AS answers,
       coalesce(sum(est_tokens), 0)::bigint AS est_tokens,
       coalesce(sum(est_tokens) FILTER (WHERE input_tokens IS NOT NULL), 0)::bigint AS est_tokens_answered,
       coalesce(sum(input_tokens + output_tokens), 0)::bigint AS actual_tokens,
       coalesce(sum(cost_usd), 0)::float8 AS cost_usd
  FROM llm_requests
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
 GROUP BY status
 ORDER BY status;
