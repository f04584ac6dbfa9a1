INSERT INTO releases (institution_id, exam_day, version, fingerprint, validation_id, row_count)
VALUES (%(inst)s, %(day)s, %(version)s, %(fingerprint)s, %(validation_id)s, 0)
RETURNING release_id;
