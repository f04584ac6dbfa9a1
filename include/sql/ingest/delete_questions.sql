-- Through a definer function (migration 019): the worker has no DELETE on tenant tables, which would let it
-- LOCK TABLE questions in any mode.
SELECT gradeflow_delete_questions(%(inst)s, %(exam_id)s) AS deleted;
