-- Per file of the day, in arrival order: when it was received (S3's LastModified), when its load started and
-- finished (ingested_at, loaded_at: migration 023), its outcome and rows. Reviewers' files included.
SELECT file_name, kind, status, last_modified AS received, ingested_at AS started, loaded_at AS loaded,
       extract(epoch FROM loaded_at - ingested_at)::float8 AS load_seconds,
       extract(epoch FROM coalesce(loaded_at, ingested_at) - last_modified)::float8 AS received_to_loaded_seconds,
       rows_total, rows_loaded, rows_rejected, rows_duplicate, size_bytes
  FROM ingested_files
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
 ORDER BY coalesce(last_modified, ingested_at), file_id;
