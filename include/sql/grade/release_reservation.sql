SELECT gradeflow_release_enqueued(%(job_id)s, %(tenant)s) AS released;
