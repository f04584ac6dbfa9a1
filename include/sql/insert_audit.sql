INSERT INTO audit_log (actor, action, institution_id, exam_day, details)
VALUES (%(actor)s, %(action)s, %(inst)s, %(day)s, %(details)s);
