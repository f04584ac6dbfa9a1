-- Earlier exam days (last 30) whose answers changed state since their last release: late answers
-- loaded, model work collected (carry-over, a batch collected after the deadline), reviews opened or
-- closed. The run's own day is released by the main path. A day with no release yet is included too.
WITH days AS (
    SELECT s.exam_day, max(rl.released_at) AS released_at
      FROM (SELECT DISTINCT exam_day FROM submissions
             WHERE institution_id = %(inst)s AND exam_day BETWEEN %(day)s - 30 AND %(day)s - 1) s
      LEFT JOIN releases rl ON rl.institution_id = %(inst)s AND rl.exam_day = s.exam_day
     GROUP BY s.exam_day
)
SELECT d.exam_day
  FROM days d
 WHERE d.released_at IS NULL
    OR EXISTS (SELECT 1 FROM llm_requests r WHERE r.institution_id = %(inst)s AND r.exam_day = d.exam_day
                  AND r.status_changed_at > d.released_at)
    OR EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = %(inst)s AND g.exam_day = d.exam_day
                  AND g.graded_at > d.released_at)
    OR EXISTS (SELECT 1 FROM review_queue v WHERE v.institution_id = %(inst)s AND v.exam_day = d.exam_day
                  AND (v.created_at > d.released_at OR v.resolved_at > d.released_at))
    OR EXISTS (SELECT 1 FROM submissions s WHERE s.institution_id = %(inst)s AND s.exam_day = d.exam_day
                  AND s.received_at > d.released_at)
 ORDER BY d.exam_day;
