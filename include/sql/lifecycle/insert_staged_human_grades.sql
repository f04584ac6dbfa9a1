-- Transition in_review -> graded (human): each staged review's score for every answer of its item, at
-- the grading version of the answer's day (one more than the last admin rerun raised it to, else 1), with
-- the rubric items the reviewer ticked, if any.
INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, model,
                    custom_id, attempt, version, rationale, confidence, reviewer, review_id, review_line_id, graded_at,
                    decisions)
SELECT a.institution_id, a.submission_id, a.question_id, a.exam_day, s.score, q.max_points, 'human', NULL,
       i.custom_id, i.reviews + 1, coalesce(v.version, 1), s.comment, NULL, s.reviewer, i.review_id,
       s.review_line_id, r.received_at, s.decisions
  FROM stage_review_targets t
  JOIN stage_reviews s ON s.source_row = t.source_row
  JOIN reviews r ON r.institution_id = %(inst)s AND r.review_line_id = s.review_line_id
  JOIN review_items i ON i.institution_id = %(inst)s AND i.review_id = s.review_id
  JOIN answers a ON a.institution_id = %(inst)s AND a.submission_id = t.submission_id AND a.question_id = t.question_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
  LEFT JOIN (SELECT exam_day, max((details ->> 'version')::int) AS version
               FROM audit_log
              WHERE institution_id = %(inst)s AND action = 'rerun_reset'
              GROUP BY exam_day) v ON v.exam_day = a.exam_day;
