UPDATE ingested_files SET archived_key = %(archived_key)s
 WHERE file_id = %(file_id)s AND institution_id = %(inst)s;
