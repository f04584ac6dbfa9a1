-- A file's rejects in one statement (arrays, one element per reject): a reviewers' file may hold 100,000.
-- (Not COPY: rejected_rows has row-level security, which COPY FROM does not support.)
INSERT INTO rejected_rows (institution_id, exam_day, file_id, file_name, row_number, field, value, reason)
SELECT %(inst)s, %(day)s, %(file_id)s, r.file_name, r.row_number, r.field, r.value, r.reason
  FROM unnest(%(files)s::text[], %(rows)s::bigint[], %(fields)s::text[], %(values)s::text[], %(reasons)s::text[])
       AS r (file_name, row_number, field, value, reason);
