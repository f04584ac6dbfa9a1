-- Issue 16: the daily report shows each file's ingest timings. A file's row is inserted when its load starts
-- (ingested_at, the transaction's start); loaded_at is when its rows and counts were written (clock time at the
-- end of the load, same transaction): loaded_at - ingested_at is the load's duration, ingested_at - last_modified
-- how long the file waited in incoming/ after it was received. NULL for files loaded before this migration.
ALTER TABLE ingested_files ADD COLUMN loaded_at timestamptz;
