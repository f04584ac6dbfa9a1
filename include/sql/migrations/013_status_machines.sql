-- 013: every status column holds only its machine's states (gradeflow.core.states, docs/answer-lifecycle.md).
-- llm_requests.status (006) and review_items.status (006) have their CHECKs already; batch_jobs.status held
-- whatever the Batch API said. It now holds our own states (prepared, superseded) and the API's statuses.
-- Added NOT VALID (no long lock while existing rows are read), then validated: a row outside the set fails
-- the migration with the constraint's name instead of being changed.
ALTER TABLE batch_jobs ADD CONSTRAINT batch_jobs_status_check CHECK (status IN (
    'prepared',
    'validating', 'in_progress', 'finalizing', 'cancelling',
    'completed', 'failed', 'expired', 'cancelled',
    'superseded', 'upload_refused')) NOT VALID;
ALTER TABLE batch_jobs VALIDATE CONSTRAINT batch_jobs_status_check;
