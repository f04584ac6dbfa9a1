SELECT a.submission_id, a.question_id, a.answer_sha256, f.file_name, a.source_row
  FROM answers a
  JOIN ingested_files f ON f.file_id = a.source_file_id
 WHERE a.institution_id = %(inst)s AND a.submission_id = ANY(%(ids)s);
