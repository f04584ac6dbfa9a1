-- Tokens the day has already committed to (queued or graded), against the institution's budget.
SELECT coalesce(sum(coalesce(input_tokens + output_tokens, est_tokens)), 0) AS tokens
  FROM llm_requests
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND status IN ('queued', 'graded');
