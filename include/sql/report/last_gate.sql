-- The day's latest release gate run: whether it passed and its checks (validation_runs.results).
SELECT validation_id, success, results, created_at
  FROM validation_runs
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
 ORDER BY created_at DESC, validation_id DESC
 LIMIT 1;
