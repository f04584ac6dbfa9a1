-- The first drop of the same bytes, other than this one (a re-send that changes nothing points to it).
SELECT f.file_id
  FROM ingested_files f
 WHERE f.institution_id = %(inst)s AND f.sha256 = %(sha)s AND f.file_id <> %(file_id)s
 ORDER BY f.file_id
 LIMIT 1;
