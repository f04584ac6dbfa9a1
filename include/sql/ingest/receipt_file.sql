-- A committed file's receipt head (ingest._resumed_receipt: its archive step, and so maybe its receipt, was cut
-- off): what the file's transaction recorded for it.
SELECT file_name, exam_day, s3_key, sha256, kind, status, rows_total, rows_loaded, rows_rejected, rows_duplicate,
       rejects_key
  FROM ingested_files
 WHERE file_id = %(file_id)s AND institution_id = %(inst)s;
