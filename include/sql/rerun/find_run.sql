-- The audit line an admin rerun run already wrote (a cleared task must not reset twice).
SELECT details FROM audit_log
 WHERE institution_id = %(inst)s AND action IN ('rerun_reset', 'rerun_resume', 'rerun_dry_run')
   AND details ->> 'run_id' = %(run_id)s
 ORDER BY audit_id
 LIMIT 1;
