UPDATE grades g SET is_current = false
  FROM rerun_scope r
 WHERE g.institution_id = r.institution_id AND g.submission_id = r.submission_id
   AND g.question_id = r.question_id AND g.is_current;
