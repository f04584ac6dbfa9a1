-- The day's answers whose current grade is a human one with rubric-item ticks and whose model request decided
-- the same rubric items: (model decisions, reviewer's ticks) per answer, for the per-criterion agreement, live.
SELECT g.question_id, r.decisions AS model_decisions, g.decisions AS human_decisions
  FROM grades g
  JOIN llm_requests r ON r.institution_id = g.institution_id AND r.custom_id = g.custom_id
 WHERE g.institution_id = %(inst)s AND g.exam_day = %(day)s AND g.is_current AND g.grader = 'human'
   AND g.decisions IS NOT NULL AND r.decisions IS NOT NULL
 ORDER BY g.question_id, g.submission_id;
