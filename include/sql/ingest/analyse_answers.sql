-- Refresh the planner's statistics of answers after a big load (inside the file's transaction).
ANALYZE answers;
