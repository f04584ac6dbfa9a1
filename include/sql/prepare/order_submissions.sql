-- First in, first out: number the day's new submissions in arrival order (the order their files
-- were ingested, then their first row in the file), continuing the institution's sequence.
-- The institution's last number is a scalar subquery (computed once, whatever the planner thinks of
-- the table's size), so the statement stays linear on a first big day with stale statistics.
WITH arrival AS (
    SELECT s.submission_id,
           row_number() OVER (ORDER BY s.source_file_id, min(a.source_row), s.submission_id) AS rn
      FROM submissions s
      JOIN answers a ON a.institution_id = s.institution_id AND a.submission_id = s.submission_id
     WHERE s.institution_id = %(inst)s AND s.exam_day = %(day)s AND s.fifo_seq IS NULL AND a.exam_day = %(day)s
     GROUP BY s.submission_id, s.source_file_id
)
UPDATE submissions s
   SET fifo_seq = (SELECT coalesce(max(fifo_seq), 0) FROM submissions WHERE institution_id = %(inst)s)
                  + arrival.rn
  FROM arrival
 WHERE s.institution_id = %(inst)s AND s.submission_id = arrival.submission_id;
