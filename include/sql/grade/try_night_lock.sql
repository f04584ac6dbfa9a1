-- One grade runner per institution at a time (session-level: released when the connection ends): a second
-- runner of the same night never submits beside the first. The key is the institution's own
-- (gradeflow_lock_key, migrations 016 and 019): no other tenant can take it first or keep it.
SELECT pg_try_advisory_lock(gradeflow_lock_key('grade:' || %(inst)s)) AS locked;
