INSERT INTO institutions (institution_id, name, timezone, s3_prefix, model)
VALUES (%(id)s, %(name)s, %(tz)s, %(prefix)s, %(model)s)
ON CONFLICT (institution_id) DO UPDATE
   SET name = EXCLUDED.name, timezone = EXCLUDED.timezone, s3_prefix = EXCLUDED.s3_prefix,
       model = EXCLUDED.model, updated_at = now()
 WHERE (institutions.name, institutions.timezone, institutions.s3_prefix, institutions.model)
       IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.timezone, EXCLUDED.s3_prefix, EXCLUDED.model);
