-- One grade runner per institution at a time (session-level: released when the connection ends): a second
-- runner of the same night never submits beside the first.
SELECT pg_try_advisory_lock(%(cls)s, hashtext(%(inst)s)) AS locked;
