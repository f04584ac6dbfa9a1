-- Which versions of a day went out to students, and the faculty decisions on them (audit_log, newest first).
SELECT at, actor, action, (details ->> 'version')::int AS version, details
  FROM audit_log
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
   AND action IN ('students_exported', 'faculty_approved', 'faculty_rejected', 'faculty_approval_timed_out',
                  'faculty_approval_requested')
 ORDER BY at DESC, audit_id DESC;
