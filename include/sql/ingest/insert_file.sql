INSERT INTO ingested_files (institution_id, exam_day, s3_key, file_name, kind, sha256, size_bytes,
                            last_modified, status, duplicate_of, archived_key, checked_with)
VALUES (%(inst)s, %(day)s, %(key)s, %(name)s, %(kind)s, %(sha)s, %(size)s,
        %(last_modified)s, %(status)s, %(duplicate_of)s, %(archived_key)s, %(checked_with)s)
RETURNING file_id;
