-- Refresh the planner's statistics of grades after rule grading wrote many of them: the night's next
-- statements (batch building, the gate) then plan for the table's real size.
SELECT gradeflow_analyse('grades');  -- with the owner's rights (migration 008)
