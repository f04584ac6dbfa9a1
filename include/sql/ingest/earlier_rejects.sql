-- Rejects already reported for the same bytes under an earlier drop (not reported twice).
SELECT r.row_number, r.field, r.reason
  FROM rejected_rows r
  JOIN ingested_files f ON f.file_id = r.file_id
 WHERE f.institution_id = %(inst)s AND f.sha256 = %(sha)s AND f.file_id <> %(file_id)s;
