SELECT pg_advisory_unlock(%(cls)s, hashtext(%(inst)s)) AS unlocked;
