-- The free-text questions of the given exams (what a request line is built from).
SELECT exam_id, question_id, qtype, max_points, prompt, rubric, reference_answer, rubric_items
  FROM questions
 WHERE institution_id = %(inst)s AND exam_id = ANY(%(exam_ids)s) AND qtype = ANY(%(qtypes)s);
