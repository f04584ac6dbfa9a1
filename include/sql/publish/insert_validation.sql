INSERT INTO validation_runs (institution_id, exam_day, success, results, fingerprint)
VALUES (%(inst)s, %(day)s, %(success)s, %(results)s, %(fingerprint)s)
RETURNING validation_id;
