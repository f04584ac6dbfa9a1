-- Whether the day has any answer at all (a day without is skipped by the gate: nothing to release).
SELECT EXISTS (SELECT 1 FROM answers WHERE institution_id = %(inst)s AND exam_day = %(day)s) AS has_answers;
