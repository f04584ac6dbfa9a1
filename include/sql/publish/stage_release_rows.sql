-- The day's outcome rows, evaluated once per release (issue 18): publish/answer_rows with each row's hash
-- (publish/row_hash), into a table of the release's transaction. The state fingerprint
-- (publish/staged_fingerprint) and the copy into release_results (publish/insert_release_results) both read
-- it, in the release's one REPEATABLE READ snapshot: the answer_lifecycle view is evaluated once, not twice,
-- and what is copied is exactly the rows whose fingerprint was checked.
-- The placeholders take the text of publish/answer_rows and publish/row_hash.
CREATE TEMP TABLE release_rows ON COMMIT DROP AS
SELECT a.*, {row_hash} AS row_hash
  FROM ({answer_rows}) a;
