INSERT INTO answers (institution_id, submission_id, question_id, exam_id, exam_day, answer_text,
                     answer_sha256, source_file_id, source_row)
SELECT %(inst)s, s.submission_id, s.question_id, s.exam_id, t.exam_day, s.answer_text,
       s.answer_sha256, %(file_id)s, s.row_number
  FROM stage_answers s
  JOIN submissions t ON t.institution_id = %(inst)s AND t.submission_id = s.submission_id
 ORDER BY s.row_number
ON CONFLICT (institution_id, submission_id, question_id) DO NOTHING;
