SELECT validation_id, success, fingerprint
  FROM validation_runs
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND validation_id = %(validation_id)s;
