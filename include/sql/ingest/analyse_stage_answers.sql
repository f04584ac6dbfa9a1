-- Refresh the planner's statistics of stage_answers after a load (inside the file's transaction): the
-- columns its joins and groupings use (not the answer text, whose statistics no plan needs).
ANALYZE stage_answers (row_number, submission_id, student_id, exam_id, question_id);
