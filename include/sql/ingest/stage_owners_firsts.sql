-- stage_owners.sql from the file's first rows (stage_firsts: each staged submission's first row, found by Arrow while
-- the file was staged, ingest._FileKeys): the same rows, without sorting every staged row for its DISTINCT ON.
-- The student and exam of an earlier load when there is one, else of the submission's first staged row (whose
-- submitted_at is the submission's; a new submission's exam day is the file's).
CREATE TEMP TABLE stage_owners ON COMMIT DROP AS
SELECT f.submission_id,
       coalesce(t.student_id, f.student_id) AS student_id,
       coalesce(t.exam_id, f.exam_id) AS exam_id,
       t.submission_id IS NOT NULL AS loaded,
       f.row_number AS first_row,
       f.submitted_at,
       coalesce(t.exam_day, %(day)s) AS exam_day
  FROM stage_firsts f
  LEFT JOIN submissions t ON t.institution_id = %(inst)s AND t.submission_id = f.submission_id;
