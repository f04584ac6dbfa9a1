-- Refresh the planner's statistics of llm_requests after batch building inserted many requests.
SELECT gradeflow_analyse('llm_requests');  -- with the owner's rights (migration 008)
