INSERT INTO questions (institution_id, exam_id, question_id, position, qtype, max_points, prompt,
                       options, answer_key, tolerance, rubric, reference_answer, rubric_items)
VALUES (%(inst)s, %(exam_id)s, %(question_id)s, %(position)s, %(qtype)s, %(max_points)s, %(prompt)s,
        %(options)s, %(answer_key)s, %(tolerance)s, %(rubric)s, %(reference_answer)s,
        %(rubric_items)s);
