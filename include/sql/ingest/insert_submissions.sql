-- The file's new submissions, as their first staged row gives them (stage_owners; a first row is never
-- a clash, so it is still staged). No ON CONFLICT (as for the answers): stage_owners found none of them loaded in
-- this transaction, and the institution's ingest lock keeps other writers away; a twin would be refused with an
-- error by the primary key, never skipped silently.
INSERT INTO submissions (institution_id, submission_id, exam_id, student_id, exam_day, submitted_at, source_file_id)
SELECT %(inst)s, submission_id, exam_id, student_id, %(day)s, submitted_at, %(file_id)s
  FROM stage_owners
 WHERE NOT loaded
 ORDER BY first_row;
