-- One ingest sweep per institution at a time (session-level: released when the connection ends). The key
-- comes from the institution's own secret (gradeflow_lock_key, migration 016): no other tenant can take it first.
SELECT pg_try_advisory_lock(gradeflow_lock_key('ingest:' || %(inst)s)) AS locked;
