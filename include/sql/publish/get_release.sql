SELECT release_id, exam_day, version, fingerprint, row_count, export_key, exported_at
  FROM releases
 WHERE institution_id = %(inst)s AND release_id = %(release_id)s;
