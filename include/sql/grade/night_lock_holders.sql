-- Who holds an institution's grade-night lock: named in the message of a runner that could not take it.
-- A bigint advisory key shows in pg_locks as classid = its high 32 bits, objid = its low 32 bits, objsubid = 1.
WITH k AS (SELECT gradeflow_lock_key('grade:' || %(inst)s) AS key)
SELECT a.pid, a.application_name, a.usename, a.state, a.state_change, a.query
  FROM k, pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid
   AND l.objsubid = 1
   AND a.pid <> pg_backend_pid();
