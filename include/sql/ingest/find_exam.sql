SELECT e.definition_sha256,
       EXISTS (SELECT 1 FROM answers a WHERE a.institution_id = e.institution_id AND a.exam_id = e.exam_id) AS has_answers
  FROM exams e
 WHERE e.institution_id = %(inst)s AND e.exam_id = %(exam_id)s;
