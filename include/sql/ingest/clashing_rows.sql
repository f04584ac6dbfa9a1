-- Staged rows that contradict what is already known, set-wise (gradeflow.intake.ingest._clash_rejects words them):
-- a submission given to another student or exam than its owner (stage_owners), or a second, different
-- answer to a question of a submission: the answer that stands is an earlier load's, else the first
-- staged row's among the rows that agree with their owner. %(loaded)s is false when no staged submission
-- was loaded before: then earlier answers are not looked up at all.
-- Also the twins (`twin`: not a clash): a later row giving the same answer to the same question of a submission
-- again. They are dropped from the stage with the clashes, so the stage then holds each (submission, question)
-- once, its first row (or none, when every row of it clashed), and the answers insert needs no DISTINCT ON
-- (counted as duplicates, as before: rows staged and not loaded).
-- Only rows that can clash are ranked: an owner clash, a row of a submission loaded before, or a question
-- answered more than once in the file (found by hashing, not sorting, the file's rows). Each window partition
-- is then still whole (it is one submission's question), so first_value reads what it read over every row.
SELECT m.row_number, m.owner_clash, m.submission_id, m.question_id, m.student_id, m.exam_id,
       left(m.answer_text, 200) AS answer_start, m.owner_student, m.owner_exam, m.loaded, m.owner_row,
       lf.file_name AS loaded_file, a.source_row AS loaded_row, m.first_row,
       NOT m.owner_clash AND m.answer_sha256 = coalesce(a.answer_sha256, m.first_sha) AS twin
  FROM (SELECT j.*, first_value(j.answer_sha256) OVER w AS first_sha, first_value(j.row_number) OVER w AS first_row
          FROM (SELECT s.row_number, s.submission_id, s.question_id, s.student_id, s.exam_id, s.answer_text,
                       s.answer_sha256, o.student_id AS owner_student, o.exam_id AS owner_exam, o.loaded,
                       o.first_row AS owner_row,
                       (s.student_id, s.exam_id) IS DISTINCT FROM (o.student_id, o.exam_id) AS owner_clash
                  FROM stage_answers s
                  JOIN stage_owners o ON o.submission_id = s.submission_id) j
         WHERE j.owner_clash OR (%(loaded)s AND j.loaded)
            OR (j.submission_id, j.question_id) IN (SELECT submission_id, question_id FROM stage_answers
                                                     GROUP BY submission_id, question_id HAVING count(*) > 1)
        WINDOW w AS (PARTITION BY j.submission_id COLLATE "C", j.question_id COLLATE "C", j.owner_clash
                     ORDER BY j.row_number)) m
  LEFT JOIN answers a ON %(loaded)s AND m.loaded AND NOT m.owner_clash AND a.institution_id = %(inst)s
                     AND a.submission_id = m.submission_id AND a.question_id = m.question_id
  LEFT JOIN ingested_files lf ON lf.file_id = a.source_file_id
 WHERE m.owner_clash OR m.answer_sha256 <> coalesce(a.answer_sha256, m.first_sha) OR m.row_number <> m.first_row
 ORDER BY m.row_number;
