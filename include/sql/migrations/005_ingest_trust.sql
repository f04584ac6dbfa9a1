-- Ingest trust (issue 5): a re-sent file counts as already loaded only for the rows that loaded.
--
-- rows_waiting: rows of this drop refused for a reason that can change (unknown exam or question, or
-- the exam's file was rejected), counted even when the reject was already reported by an earlier drop
-- of the same bytes. A drop with rows_waiting = 0 settles its bytes: a later identical drop is a duplicate.
ALTER TABLE ingested_files ADD COLUMN rows_waiting integer NOT NULL DEFAULT 0;

-- Drops recorded before this column existed: waiting if any drop of the same bytes had rows refused
-- for an unknown exam or question (conservative: such bytes are read again when re-sent, which is safe).
UPDATE ingested_files f
   SET rows_waiting = w.n
  FROM (SELECT g.institution_id, g.sha256, count(DISTINCT r.row_number) AS n
          FROM ingested_files g
          JOIN rejected_rows r ON r.institution_id = g.institution_id AND r.file_id = g.file_id
         WHERE r.field IN ('exam_id', 'question_id') AND r.row_number IS NOT NULL
         GROUP BY g.institution_id, g.sha256) w
 WHERE f.institution_id = w.institution_id AND f.sha256 = w.sha256;

-- The old rule (one clean load per bytes) counted a re-send whose rejects were filtered as clean.
DROP INDEX IF EXISTS ingested_files_once;
CREATE UNIQUE INDEX ingested_files_settled ON ingested_files (institution_id, sha256)
    WHERE status = 'loaded' AND rows_waiting = 0 AND kind <> 'unknown';
