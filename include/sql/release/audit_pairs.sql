-- Every review item of the institution that a reviewer scored and that has a model suggestion, to date: one
-- (model score, human score) pair per item (a distinct answer: identical answers are one item), the item's
-- latest review standing. origin 'audit': a model grade released without a human, drawn into the audit sample
-- (the accuracy of unreviewed grades); 'routed': work routed to review (reported apart). The model's score is
-- clamped to the question's range, as it was released or suggested.
SELECT i.origin, i.exam_day::text AS exam_day, i.exam_id, i.question_id, q.max_points::float8 AS max_points,
       least(greatest(r.score, 0), q.max_points)::float8 AS model_score, rv.score::float8 AS human_score
  FROM review_items i
  JOIN llm_requests r ON r.institution_id = i.institution_id AND r.custom_id = i.custom_id AND r.score IS NOT NULL
  JOIN questions q ON q.institution_id = i.institution_id AND q.exam_id = i.exam_id AND q.question_id = i.question_id
  JOIN LATERAL (SELECT x.score FROM reviews x
                 WHERE x.institution_id = i.institution_id AND x.review_id = i.review_id
                 ORDER BY x.review_line_id DESC LIMIT 1) rv ON true
 WHERE i.institution_id = %(inst)s
 ORDER BY i.origin, i.exam_id, i.question_id, i.review_id;
