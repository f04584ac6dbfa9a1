-- Refresh the planner's statistics of answers after a big load (inside the file's transaction).
SELECT gradeflow_analyse('answers');  -- with the owner's rights (migration 008)
