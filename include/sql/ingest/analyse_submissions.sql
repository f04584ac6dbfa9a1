-- Refresh the planner's statistics of submissions after a big load (inside the file's transaction).
SELECT gradeflow_analyse('submissions');  -- with the owner's rights (migration 008)
