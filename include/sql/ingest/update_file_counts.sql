UPDATE ingested_files
   SET rows_total = %(total)s, rows_loaded = %(loaded)s, rows_rejected = %(rejected)s,
       rows_duplicate = %(duplicate)s, rows_waiting = %(waiting)s, rejects_key = %(rejects_key)s,
       status = %(status)s, duplicate_of = COALESCE(%(duplicate_of)s, duplicate_of),
       loaded_at = clock_timestamp()
 WHERE file_id = %(file_id)s AND institution_id = %(inst)s;
