-- Who each staged submission belongs to (gradeflow.intake.ingest._clash_rejects): the student, exam and submitted_at
-- of an earlier load when there is one, else of the submission's first staged row (the first row wins, and
-- its submitted_at is the submission's; a new submission's exam day is the file's). So each row holds what
-- `submissions` holds for it once the file's new submissions are inserted (insert_submissions.sql, from these rows),
-- and the receipt reads it here (receipt_loaded.sql) rather than joining all of the institution's submissions.
-- The first rows come from stage_firsts (each chunk's first row of each of its submissions, found by Arrow while
-- the file was staged, ingest._FileKeys): a row per submission and chunk is sorted, not every staged row. Sorted byte-wise
-- (COLLATE "C": the same groups, a faster sort than the database's locale order).
CREATE TEMP TABLE stage_owners ON COMMIT DROP AS
SELECT f.submission_id,
       coalesce(t.student_id, f.student_id) AS student_id,
       coalesce(t.exam_id, f.exam_id) AS exam_id,
       t.submission_id IS NOT NULL AS loaded,
       f.row_number AS first_row,
       coalesce(t.submitted_at, f.submitted_at) AS submitted_at,
       coalesce(t.exam_day, %(day)s) AS exam_day
  FROM (SELECT DISTINCT ON (submission_id COLLATE "C") submission_id, student_id, exam_id, row_number, submitted_at
          FROM stage_firsts
         ORDER BY submission_id COLLATE "C", row_number) f
  LEFT JOIN submissions t ON t.institution_id = %(inst)s AND t.submission_id = f.submission_id;
