-- Identity of the exact state of a day: every column of every row of publish/answer_rows (which grade,
-- which review, which state and reason, score, points and grader of every answer), computed in the
-- database in one pass, without sorting: the row count and the sum of the rows' 64-bit hashes
-- (publish/row_hash; a multiset hash, so the rows' order does not matter).
-- The gate sums the same hashes as it streams the rows it validates (publish/answer_states); the release sums
-- them as it writes the rows (publish/insert_release_results, kept in release_results.row_hash) and refuses to
-- release if the two differ; a rerun on a day already released in the validated state checks it with this query.
-- The placeholders take the text of publish/answer_rows and publish/row_hash.
SELECT 'v2:' || count(*) || ':' || coalesce(sum({row_hash}), 0) AS fingerprint
  FROM ({answer_rows}) a;
