-- Staged rows refused as clashes do not load.
DELETE FROM stage_answers WHERE row_number = ANY(%(rows)s);
