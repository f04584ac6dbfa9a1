-- For the rest of this transaction, plan joins as bulk work (hash or merge joins over the day's
-- rows), never as a loop that repeats a lookup or a scan per row: a set-based statement over a whole
-- day must not turn quadratic when the table statistics are stale (a new institution's first big day).
-- Sorts and hashes of a day's rows get the memory to stay off disk.
SELECT set_config('enable_nestloop', 'off', true), set_config('work_mem', '128MB', true);
