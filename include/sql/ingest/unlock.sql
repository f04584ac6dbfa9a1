SELECT pg_advisory_unlock(gradeflow_lock_key('ingest:' || %(inst)s)) AS unlocked;
