-- An earlier load of the same bytes that counts: one whose archive step was cut off (same key, to be
-- resumed), or one that loaded cleanly (a duplicate drop). A file that had rejects is processed
-- again, so rows refused for a reason that has since gone (e.g. the exam arrived later) can load.
SELECT file_id, s3_key, status, archived_key
  FROM ingested_files
 WHERE institution_id = %(inst)s AND sha256 = %(sha)s AND status <> 'duplicate'
   AND ((archived_key IS NULL AND s3_key = %(key)s) OR (status = 'loaded' AND rows_rejected = 0))
 ORDER BY (archived_key IS NULL) DESC, file_id
 LIMIT 1;
