-- Exam files whose latest rejection named a reason, by file name: answers to such an exam say why it is unknown.
SELECT DISTINCT ON (f.file_name) f.file_name, r.field, r.reason
  FROM ingested_files f
  JOIN rejected_rows r ON r.institution_id = f.institution_id AND r.file_id = f.file_id
 WHERE f.institution_id = %(inst)s AND f.kind = 'exam' AND f.status = 'rejected'
 ORDER BY f.file_name, f.file_id DESC, r.reject_id;
