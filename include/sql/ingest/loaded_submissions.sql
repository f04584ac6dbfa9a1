SELECT submission_id, student_id, exam_id
  FROM submissions
 WHERE institution_id = %(inst)s AND submission_id = ANY(%(ids)s);
