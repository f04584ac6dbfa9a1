-- Bounded waits inside one file's transaction: a row lock held elsewhere fails this file (it stays in
-- incoming/ for the next sweep) instead of stalling the sweep.
SELECT set_config('lock_timeout', %(timeout)s, true) AS lock_timeout;
