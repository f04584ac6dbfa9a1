-- publish/state_fingerprint over the rows the release staged (publish/stage_release_rows): the same
-- expression over the same rows and hashes, so the same value for the same state.
SELECT 'v2:' || count(*) || ':' || coalesce(sum(row_hash), 0) AS fingerprint
  FROM release_rows;
