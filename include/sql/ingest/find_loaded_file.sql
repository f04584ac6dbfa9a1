-- An earlier load of the same bytes that counts: one whose archive step was cut off (same key, to be
-- resumed), or one whose outcome cannot change (a duplicate drop). A file with rows refused because
-- their exam or question was unknown is processed again when re-sent: the definition may have
-- arrived since, and those rows can load now.
SELECT f.file_id, f.s3_key, f.status, f.archived_key
  FROM ingested_files f
 WHERE f.institution_id = %(inst)s AND f.sha256 = %(sha)s AND f.status <> 'duplicate'
   AND ((f.archived_key IS NULL AND f.s3_key = %(key)s)
        OR (f.status = 'loaded'
            AND NOT EXISTS (SELECT 1 FROM rejected_rows r WHERE r.institution_id = f.institution_id
                               AND r.file_id = f.file_id AND r.field IN ('exam_id', 'question_id'))))
 ORDER BY (f.archived_key IS NULL) DESC, f.file_id
 LIMIT 1;
