-- This night's jobs the API refused whole (the enqueued-token cap, or a 400 on upload): how many, and the
-- smallest one's size (the next wave's jobs are cut to half of it).
SELECT count(*) AS refusals, min(request_count) AS smallest
  FROM batch_jobs
 WHERE institution_id = %(inst)s AND night = %(night)s
   AND (errors @> '{"data": [{"code": "token_limit_exceeded"}]}'::jsonb OR status = 'upload_refused');
