-- Transition in_review -> graded (human): the reviewer's score for every answer of the item.
INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, model,
                    custom_id, attempt, version, rationale, confidence, reviewer, review_id, review_line_id, graded_at)
SELECT a.institution_id, a.submission_id, a.question_id, a.exam_day, rv.score, q.max_points, 'human', NULL,
       i.custom_id, rv.reviews_before + 1, %(version)s, rv.comment, NULL, rv.reviewer, i.review_id,
       rv.review_line_id, rv.received_at
  FROM unnest(%(submission_ids)s::text[], %(question_ids)s::text[]) AS t(submission_id, question_id)
  JOIN answers a ON a.institution_id = %(inst)s AND a.submission_id = t.submission_id AND a.question_id = t.question_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
  JOIN review_items i ON i.institution_id = %(inst)s AND i.review_id = %(review_id)s
  CROSS JOIN (SELECT r.*, (SELECT reviews FROM review_items WHERE review_id = r.review_id) AS reviews_before
                FROM reviews r WHERE r.institution_id = %(inst)s AND r.review_line_id = %(review_line_id)s) rv;
