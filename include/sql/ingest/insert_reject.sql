INSERT INTO rejected_rows (institution_id, exam_day, file_id, file_name, row_number, field, value, reason)
VALUES (%(inst)s, %(day)s, %(file_id)s, %(file)s, %(row)s, %(field)s, %(value)s, %(reason)s);
