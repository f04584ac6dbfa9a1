SELECT exam_id, question_id FROM questions WHERE institution_id = %(inst)s;
