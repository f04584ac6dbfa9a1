-- The batch's status as the API reports it now, with its files, counts and errors; only from a state that
-- may move there (core.states.JOB_TRANSITIONS).
UPDATE batch_jobs
   SET status = %(status)s, output_file_id = %(output_file_id)s, error_file_id = %(error_file_id)s,
       request_counts = %(request_counts)s, errors = %(errors)s,
       finished_at = CASE WHEN %(terminal)s THEN coalesce(finished_at, now()) ELSE finished_at END
 WHERE institution_id = %(inst)s AND job_id = %(job_id)s AND status = ANY(%(from_states)s);
