-- Whether a file staged in several chunks may clash across them, when no chunk clashes within itself
-- (gradeflow.intake.ingest._FileKeys): a submission continued in another chunk (two first rows in stage_firsts, one
-- per chunk) with another student or exam there, or with a question of it staged twice. Only the continued
-- submissions' staged rows are grouped. If not, clashing_rows.sql has nothing to find.
WITH continued AS (
    SELECT submission_id
      FROM stage_firsts
     GROUP BY submission_id
    HAVING count(*) > 1
)
SELECT EXISTS (SELECT 1
                 FROM stage_firsts f
                 JOIN continued c ON c.submission_id = f.submission_id
                GROUP BY f.submission_id
               HAVING min(f.student_id) <> max(f.student_id) OR min(f.exam_id) <> max(f.exam_id))
    OR EXISTS (SELECT 1
                 FROM stage_answers s
                 JOIN continued c ON c.submission_id = s.submission_id
                GROUP BY s.submission_id, s.question_id
               HAVING count(*) > 1) AS may;
