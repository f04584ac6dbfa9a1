-- The drops that settle later drops of the same bytes (find_loaded_file.sql's second and third cases), on the days
-- of this sweep's files: the read-ahead worker does not check a file one of them settles (its transaction decides).
SELECT f.sha256, f.checked_with, f.rows_waiting = 0 AS settled
  FROM ingested_files f
 WHERE f.institution_id = %(inst)s AND f.exam_day = ANY(%(days)s) AND f.status IN ('loaded', 'duplicate')
   AND f.kind <> 'unknown' AND (f.rows_waiting = 0 OR f.checked_with IS NOT NULL);
