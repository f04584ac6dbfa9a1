-- Refresh the planner's statistics of stage_answers after a big load (inside the file's transaction).
ANALYZE stage_answers;
