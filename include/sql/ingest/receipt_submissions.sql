-- A file's receipt: the submissions whose answers it loaded, with the submitted_at recorded for them.
SELECT a.submission_id, s.student_id, s.exam_id, s.submitted_at, count(*) AS answers
  FROM answers a
  JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id
 WHERE a.institution_id = %(inst)s AND a.source_file_id = %(file_id)s
 GROUP BY a.submission_id, s.student_id, s.exam_id, s.submitted_at
 ORDER BY a.submission_id;
