DELETE FROM questions WHERE institution_id = %(inst)s AND exam_id = %(exam_id)s;
