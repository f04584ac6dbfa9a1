-- The institution's actual output tokens per question (last 14 nights, newest 20,000 graded lines): lines and
-- their total, for the learned output estimate (gradeflow.grading.prepare.output_estimates).
SELECT recent.exam_id, recent.question_id, count(*) AS lines, sum(recent.output_tokens)::bigint AS output_tokens
  FROM (SELECT r.exam_id, r.question_id, l.output_tokens
          FROM batch_lines l
          JOIN batch_jobs j ON j.job_id = l.job_id AND j.institution_id = l.institution_id
          JOIN llm_requests r ON r.institution_id = l.institution_id AND r.custom_id = l.custom_id
         WHERE l.institution_id = %(inst)s AND l.outcome = 'graded' AND l.output_tokens > 0
           AND j.night BETWEEN %(night)s - 14 AND %(night)s
         ORDER BY l.job_id DESC
         LIMIT 20000) recent
 GROUP BY recent.exam_id, recent.question_id;
