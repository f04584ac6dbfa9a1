-- The student-facing view of one release: per answer, only what its student needs (score, status, feedback, the
-- rubric items met), in student order so the export writes one student's document at a time. Never the model,
-- its confidence, a suggestion, a review reason or another student's row: the export groups by student_id.
SELECT student_id, exam_id, submission_id, question_id, question_type, status,
       score::float8 AS score, max_points::float8 AS max_points,
       CASE WHEN status = 'graded' THEN rationale END AS feedback,
       (SELECT jsonb_agg(jsonb_build_object('id', c ->> 'id', 'met', c -> 'met', 'points', c -> 'points')
                         ORDER BY n)
          FROM jsonb_array_elements(criteria) WITH ORDINALITY AS items(c, n))::text AS criteria
  FROM release_results
 WHERE release_id = %(release_id)s AND institution_id = %(inst)s
 ORDER BY student_id, exam_id, submission_id, question_id;
