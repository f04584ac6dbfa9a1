-- The grading version of the day: 1, or one more than the last admin rerun raised it to.
SELECT coalesce(max((details ->> 'version')::int), 1) AS version
  FROM audit_log
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND action = 'rerun_reset';
