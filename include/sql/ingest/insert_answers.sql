-- The staged answers (clashes and twins already dropped: each (submission, question) is staged once, its first row
-- in the file). An answer an earlier load holds is a duplicate; it is looked for only when some staged submission
-- was loaded before (%(loaded)s, from stage_owners), so a new file's rows are inserted without a probe
-- per row (no ON CONFLICT: the institution's ingest lock keeps other writers away, and the primary key
-- would still refuse a twin with an error rather than a silent double). Only the transaction's own,
-- analysed temp tables are joined: the plan does not depend on the statistics of submissions. A new submission's
-- exam day is the file's; the owners are joined (for an earlier load's day) only when some submission was loaded
-- before. The rows go in in the stage's order, the file's (no sort, as the indexed COPY ceiling loads them).
-- What was inserted is counted per submission into stage_loaded (a temp table of the transaction): the file's
-- loaded count and its receipt (receipt_loaded.sql) read it, not answers.
CREATE TEMP TABLE stage_loaded ON COMMIT DROP AS
WITH inserted AS (
INSERT INTO answers (institution_id, submission_id, question_id, exam_id, exam_day, answer_text,
                     answer_sha256, source_file_id, source_row)
SELECT %(inst)s, s.submission_id, s.question_id, s.exam_id, coalesce(o.exam_day, %(day)s), s.answer_text,
       s.answer_sha256, %(file_id)s, s.row_number
  FROM stage_answers s
  LEFT JOIN stage_owners o ON %(loaded)s AND o.submission_id = s.submission_id
 WHERE NOT (%(loaded)s AND EXISTS (SELECT 1 FROM answers a
                                     WHERE a.institution_id = %(inst)s AND a.submission_id = s.submission_id
                                       AND a.question_id = s.question_id))
RETURNING submission_id)
SELECT submission_id, count(*)::integer AS answers FROM inserted GROUP BY submission_id;
