-- The released rows: every answer of the day in exactly one state (answer_lifecycle), graded or pending
-- with the reason it waits (in review with its review reason, deferred, pending the model, received).
INSERT INTO release_results (release_id, institution_id, exam_day, version, exam_id, submission_id, student_id,
                             question_id, status, score, max_points, grader, pending_reason, review_reason)
SELECT %(release_id)s, l.institution_id, l.exam_day, %(version)s, l.exam_id, l.submission_id, s.student_id,
       l.question_id, CASE WHEN l.state = 'graded' THEN 'graded' ELSE 'pending' END,
       l.score, q.max_points, l.grader, l.pending_reason, l.review_reason
  FROM answer_lifecycle l
  JOIN submissions s ON s.institution_id = l.institution_id AND s.submission_id = l.submission_id
  JOIN questions q ON q.institution_id = l.institution_id AND q.exam_id = l.exam_id AND q.question_id = l.question_id
 WHERE l.institution_id = %(inst)s AND l.exam_day = %(day)s;
