INSERT INTO exams (institution_id, exam_id, exam_day, title, definition_sha256, source_file_id)
VALUES (%(inst)s, %(exam_id)s, %(day)s, %(title)s, %(sha)s, %(file_id)s)
ON CONFLICT (institution_id, exam_id) DO UPDATE
   SET exam_day = EXCLUDED.exam_day, title = EXCLUDED.title, definition_sha256 = EXCLUDED.definition_sha256,
       source_file_id = EXCLUDED.source_file_id, loaded_at = now();
