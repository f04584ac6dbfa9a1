-- The day's answers by state for the daily report, from the view answer_lifecycle (docs/answer-lifecycle.md):
-- graded by rule / model / human, in review, deferred (to the next night), pending model, received.
-- The report draws whatever states this returns, in this order.
SELECT CASE WHEN state = 'graded' AND grader = 'rule' THEN 'rule'
            WHEN state = 'graded' AND grader = 'llm' THEN 'model'
            WHEN state = 'graded' AND grader = 'human' THEN 'human'
            WHEN state = 'in_review' THEN 'in review'
            WHEN state = 'deferred' THEN 'deferred'
            WHEN state = 'queued' THEN 'pending model'
            ELSE state END AS state,
       count(*)::int AS answers
  FROM answer_lifecycle
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
 GROUP BY 1
 ORDER BY min(CASE state WHEN 'graded' THEN 0 WHEN 'in_review' THEN 1 WHEN 'deferred' THEN 2
                         WHEN 'queued' THEN 3 ELSE 4 END), 1;
