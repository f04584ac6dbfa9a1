-- A file's receipt, in its own transaction: the submissions whose answers its insert loaded (stage_loaded, from
-- insert_answers.sql), with the submitted_at recorded for them and how many answers. The same rows, in the same
-- order, as receipt_submissions.sql finds in answers by source_file_id, without reading every answer of the
-- institution (answers has no index on its source file). The student, exam and submitted_at come from
-- stage_owners: for each staged submission what `submissions` holds (the earlier load's, or the file's first row
-- that insert_submissions.sql inserted), read from the file's own temporary table instead of a join over all the
-- institution's submissions (which grew with its history: 0.1 s for the day's first 200k file, 0.4 s for its fifth).
-- Sent as CSV into a temporary file (no Python object per row in the file's transaction); the receipt is written
-- from it after the commit (ingest._Receipt). The submitted_at as ISO 8601 text in the session's time zone
-- (to_json's form: the same instant and offset that psycopg reads, whatever the DateStyle).
COPY (SELECT l.submission_id, o.student_id, o.exam_id, to_json(o.submitted_at) #>> '{}', l.answers
        FROM stage_loaded l
        JOIN stage_owners o ON o.submission_id = l.submission_id
       ORDER BY l.submission_id) TO STDOUT (FORMAT csv);
