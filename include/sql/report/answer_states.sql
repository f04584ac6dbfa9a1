-- The day's answers by state, for the daily report: graded by rule / model / human, in review, pending.
-- "pending" is every answer with neither a current grade nor an open review (queued for the model,
-- deferred, or not graded yet). Adapt the CASE when the answer states change; the report shows what it returns.
SELECT CASE WHEN g.grader = 'rule' THEN 'rule'
            WHEN g.grader = 'llm' THEN 'model'
            WHEN g.grader = 'human' THEN 'human'
            WHEN r.review_id IS NOT NULL THEN 'in review'
            ELSE 'pending' END AS state,
       count(*)::int AS answers
  FROM answers a
  LEFT JOIN grades g ON g.institution_id = a.institution_id AND g.submission_id = a.submission_id
                    AND g.question_id = a.question_id AND g.is_current
  LEFT JOIN review_queue r ON r.institution_id = a.institution_id AND r.submission_id = a.submission_id
                          AND r.question_id = a.question_id AND r.resolved_at IS NULL
 WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s
 GROUP BY 1
 ORDER BY 1;
