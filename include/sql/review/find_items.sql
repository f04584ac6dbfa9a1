-- The review items of this institution named in a reviewers' file (never another institution's).
SELECT i.review_id, i.status, i.exam_day, q.max_points::float8 AS max_points, q.rubric_items
  FROM review_items i
  JOIN questions q ON q.institution_id = i.institution_id AND q.exam_id = i.exam_id AND q.question_id = i.question_id
 WHERE i.institution_id = %(inst)s AND i.review_id = ANY(%(ids)s);
