-- The institution's recent actual output tokens per graded line (last 14 nights, newest 20,000 lines).
SELECT count(*) AS lines, avg(output_tokens)::float8 AS mean
  FROM (SELECT l.output_tokens
          FROM batch_lines l
          JOIN batch_jobs j ON j.job_id = l.job_id AND j.institution_id = l.institution_id
         WHERE l.institution_id = %(inst)s AND l.outcome = 'graded' AND l.output_tokens > 0
           AND j.night BETWEEN %(night)s - 14 AND %(night)s
         ORDER BY l.job_id DESC
         LIMIT 20000) recent;
