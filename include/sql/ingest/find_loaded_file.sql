-- An earlier drop of the same bytes that settles this one: one whose archive step was cut off (same
-- key, to be resumed), or one that left no row waiting (every row of these bytes is loaded or refused
-- for a reason that cannot change), or one whose rows were checked against exactly what this drop's would
-- be (checked_with, migration 033: nothing its waiting rows wait on has arrived since). Rows refused because
-- their exam or question was unknown are read again when the file is re-sent after that changed: the definition
-- may have arrived, and those rows can load now.
-- (kind: the same bytes dropped as another kind of file are not its duplicate; the caller compares.)
SELECT f.file_id, f.s3_key, f.status, f.archived_key, f.rows_total, f.rows_waiting, f.kind
  FROM ingested_files f
 WHERE f.institution_id = %(inst)s AND f.sha256 = %(sha)s
   AND ((f.archived_key IS NULL AND f.s3_key = %(key)s)
        OR (f.status IN ('loaded', 'duplicate') AND f.kind <> 'unknown'
            AND (f.rows_waiting = 0 OR f.checked_with = %(checked_with)s)))
 ORDER BY (f.archived_key IS NULL AND f.s3_key = %(key)s) DESC, f.file_id
 LIMIT 1;
