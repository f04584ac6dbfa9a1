INSERT INTO release_results (release_id, institution_id, exam_day, version, exam_id, submission_id, student_id,
                             question_id, status, score, max_points, grader)
SELECT %(release_id)s, a.institution_id, a.exam_day, %(version)s, a.exam_id, a.submission_id, s.student_id,
       a.question_id, CASE WHEN g.grade_id IS NULL THEN 'pending_review' ELSE 'graded' END,
       g.score, q.max_points, g.grader
  FROM answers a
  JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
  LEFT JOIN grades g ON g.institution_id = a.institution_id AND g.submission_id = a.submission_id
                    AND g.question_id = a.question_id AND g.is_current
 WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s;
