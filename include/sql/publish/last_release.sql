SELECT release_id, version, fingerprint, row_count, export_key
  FROM releases
 WHERE institution_id = %(inst)s AND exam_day = %(day)s
 ORDER BY version DESC
 LIMIT 1;
