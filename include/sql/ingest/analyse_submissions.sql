-- Refresh the planner's statistics of submissions after a big load (inside the file's transaction).
ANALYZE submissions;
