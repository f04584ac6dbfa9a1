-- A file's receipt, in its own transaction: the submissions whose answers its insert loaded (stage_loaded, from
-- insert_answers.sql), with the submitted_at recorded for them and how many answers. The same rows, in the same
-- order, as receipt_submissions.sql finds in answers by source_file_id, without reading every answer of the
-- institution (answers has no index on its source file). Sent as CSV into a temporary file (no Python object per
-- row in the file's transaction); the receipt is written from it after the commit (ingest._Receipt). The
-- submitted_at as ISO 8601 text in the session's time zone (to_json's form: the same instant and offset that
-- psycopg reads, whatever the DateStyle).
COPY (SELECT l.submission_id, s.student_id, s.exam_id, to_json(s.submitted_at) #>> '{}', l.answers
        FROM stage_loaded l
        JOIN submissions s ON s.institution_id = %(inst)s AND s.submission_id = l.submission_id
       ORDER BY s.submission_id) TO STDOUT (FORMAT csv);
