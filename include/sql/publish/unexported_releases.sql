-- Releases committed whose exports were never completed (a crash or a storage error between the two):
-- not visible to readers until the next run writes their files.
SELECT release_id, exam_day, version, released_at
  FROM releases
 WHERE institution_id = %(inst)s AND exported_at IS NULL
 ORDER BY exam_day, version;
