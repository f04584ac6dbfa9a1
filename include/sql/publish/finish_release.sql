UPDATE releases SET row_count = %(row_count)s
 WHERE release_id = %(release_id)s AND institution_id = %(inst)s;
