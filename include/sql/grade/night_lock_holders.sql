-- Who holds an institution's grade-night lock: named in the message of a runner that could not take it.
SELECT a.pid, a.application_name, a.usename, a.state, a.state_change, a.query
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.classid = (%(cls)s)::bigint::oid AND l.objid = (hashtext(%(inst)s)::bigint & 4294967295)::oid
   AND l.objsubid = 2
   AND a.pid <> pg_backend_pid();
