-- Current grades of the day per question in five bins of the score's share of the question's points
-- (bin 1: under a fifth, …, bin 5: four fifths to full marks).
SELECT a.exam_id, a.question_id, q.qtype, q.max_points::float8 AS max_points,
       least(width_bucket((g.score / q.max_points)::float8, 0.0, 1.0, 5), 5)::int AS bin,
       count(*)::int AS answers
  FROM grades g
  JOIN answers a ON a.institution_id = g.institution_id AND a.submission_id = g.submission_id
                AND a.question_id = g.question_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
 WHERE g.institution_id = %(inst)s AND g.exam_day = %(day)s AND g.is_current
 GROUP BY a.exam_id, a.question_id, q.qtype, q.max_points, q.position, 5
 ORDER BY a.exam_id, q.position, a.question_id, 5;
