UPDATE releases SET export_key = %(key)s WHERE release_id = %(release_id)s AND institution_id = %(inst)s;
