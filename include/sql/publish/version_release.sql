SELECT release_id, version, exported_at
  FROM releases
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND version = %(version)s;
