-- The frame the release gate's GX suite checks: the columns of publish/answer_rows it looks at, one row
-- per received answer, in a stable order (so a failed check's sample rows are the same on a rerun), with
-- each row's hash (publish/row_hash, over every column of the row): the gate sums them into the state
-- fingerprint of exactly the rows it checked, in the same pass (publish/state_fingerprint).
-- The placeholders take the text of publish/answer_rows and publish/row_hash.
SELECT institution, exam_day, submission_id, question_id, max_points, grade_count, in_review, waiting, score, grader,
       {row_hash} AS row_hash
  FROM ({answer_rows}) a
 ORDER BY submission_id COLLATE "C", question_id COLLATE "C"
