-- First in, first out: number the day's new submissions in arrival order (the order their files
-- were ingested, then their first row in the file), continuing the institution's sequence.
WITH base AS (
    SELECT coalesce(max(fifo_seq), 0) AS last_seq FROM submissions WHERE institution_id = %(inst)s
), arrival AS (
    SELECT s.submission_id,
           row_number() OVER (ORDER BY s.source_file_id, min(a.source_row), s.submission_id) AS rn
      FROM submissions s
      JOIN answers a ON a.institution_id = s.institution_id AND a.submission_id = s.submission_id
     WHERE s.institution_id = %(inst)s AND s.exam_day = %(day)s AND s.fifo_seq IS NULL
     GROUP BY s.submission_id, s.source_file_id
)
UPDATE submissions s
   SET fifo_seq = base.last_seq + arrival.rn
  FROM arrival, base
 WHERE s.institution_id = %(inst)s AND s.submission_id = arrival.submission_id;
