INSERT INTO reviews (institution_id, exam_day, review_id, score, reviewer, comment, file_id, source_row)
VALUES (%(inst)s, %(day)s, %(review_id)s, %(score)s, %(reviewer)s, %(comment)s, %(file_id)s, %(row)s)
RETURNING review_line_id;
