SELECT file_id, s3_key, status, archived_key
  FROM ingested_files
 WHERE institution_id = %(inst)s AND sha256 = %(sha)s AND status <> 'duplicate';
