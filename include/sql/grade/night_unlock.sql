SELECT pg_advisory_unlock(gradeflow_lock_key('grade:' || %(inst)s)) AS unlocked;
