-- The release's exports are in place: from now on it is visible (published_releases, published_results).
UPDATE releases
   SET export_key = %(key)s, submissions_key = %(submissions_key)s, agreement_key = %(agreement_key)s,
       agreement = %(agreement)s, exported_at = coalesce(exported_at, now())
 WHERE release_id = %(release_id)s AND institution_id = %(inst)s;
