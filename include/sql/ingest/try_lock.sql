-- One ingest sweep per institution at a time (session-level: released when the connection ends).
SELECT pg_try_advisory_lock(%(cls)s, hashtext(%(inst)s)) AS locked;
