-- Staged rows that contradict what is already known, set-wise (gradeflow.ingest._clash_rejects words them):
-- a submission given to another student or exam than its owner (stage_owners), or a second, different
-- answer to a question of a submission: the answer that stands is an earlier load's, else the first
-- staged row's among the rows that agree with their owner. %(loaded)s is false when no staged submission
-- was loaded before: then earlier answers are not looked up at all.
WITH marked AS (
    SELECT s.row_number, s.submission_id, s.question_id, s.student_id, s.exam_id, s.answer_sha256,
           left(s.answer_text, 200) AS answer_start, o.student_id AS owner_student, o.exam_id AS owner_exam,
           o.loaded, o.first_row AS owner_row,
           (s.student_id, s.exam_id) IS DISTINCT FROM (o.student_id, o.exam_id) AS owner_clash
      FROM stage_answers s
      JOIN stage_owners o ON o.submission_id = s.submission_id
), firsts AS (
    SELECT DISTINCT ON (submission_id, question_id) submission_id, question_id, answer_sha256, row_number, loaded
      FROM marked
     WHERE NOT owner_clash
     ORDER BY submission_id, question_id, row_number
), standing AS (
    SELECT f.submission_id, f.question_id, coalesce(a.answer_sha256, f.answer_sha256) AS sha,
           lf.file_name AS loaded_file, a.source_row AS loaded_row, f.row_number AS first_row
      FROM firsts f
      LEFT JOIN answers a ON %(loaded)s AND f.loaded AND a.institution_id = %(inst)s
                         AND a.submission_id = f.submission_id AND a.question_id = f.question_id
      LEFT JOIN ingested_files lf ON lf.file_id = a.source_file_id
)
SELECT m.row_number, m.owner_clash, m.submission_id, m.question_id, m.student_id, m.exam_id, m.answer_start,
       m.owner_student, m.owner_exam, m.loaded, m.owner_row, st.loaded_file, st.loaded_row, st.first_row
  FROM marked m
  LEFT JOIN standing st ON st.submission_id = m.submission_id AND st.question_id = m.question_id
 WHERE m.owner_clash OR m.answer_sha256 <> st.sha
 ORDER BY m.row_number;
