INSERT INTO submissions (institution_id, submission_id, exam_id, student_id, exam_day, submitted_at, source_file_id)
SELECT DISTINCT ON (submission_id)
       %(inst)s, submission_id, exam_id, student_id, %(day)s, submitted_at, %(file_id)s
  FROM stage_answers
 ORDER BY submission_id, row_number
ON CONFLICT (institution_id, submission_id) DO NOTHING;
