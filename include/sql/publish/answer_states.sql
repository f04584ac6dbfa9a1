-- The frame the release gate's GX suite checks: the columns of publish/answer_rows it looks at, one row
-- per received answer, with each row's state (the gate counts the waiting states from it: deferred, queued,
-- received) and hash (publish/row_hash, over every column of the row): the gate sums them into the state
-- fingerprint of exactly the rows it checked, in the same pass (publish/state_fingerprint).
-- Unordered (a sort of every answer costs more than the check): when a check fails, the gate sorts the frame
-- by submission and question (byte order, as COLLATE "C") and checks it again, so the sample rows it reports
-- are the same on a rerun.
-- The placeholders take the text of publish/answer_rows and publish/row_hash.
SELECT institution, exam_day, submission_id, question_id, max_points, grade_count, in_review, waiting, score, grader,
       state, {row_hash} AS row_hash
  FROM ({answer_rows}) a
