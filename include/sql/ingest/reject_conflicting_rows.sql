-- Rows whose submission_id is already loaded for another student or exam: they cannot both be right.
DELETE FROM stage_answers s
 USING submissions t
 WHERE t.institution_id = %(inst)s
   AND t.submission_id = s.submission_id
   AND (t.student_id <> s.student_id OR t.exam_id <> s.exam_id)
RETURNING s.row_number, s.submission_id, t.student_id AS loaded_student_id, t.exam_id AS loaded_exam_id;
