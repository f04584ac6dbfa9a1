-- Staged rows refused as clashes, and twins (the same answer again), do not load.
DELETE FROM stage_answers WHERE row_number = ANY(%(rows)s);
