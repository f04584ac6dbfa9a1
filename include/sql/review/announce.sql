-- The earliest exam day with reviews applied since the last announcement: it goes into the Asset event
-- that schedules the publish DAG, and its reviews are marked announced. One day per announcement (one
-- publish run releases one day); later days follow at the next ingest sweeps.
WITH first_day AS (
    SELECT min(exam_day) AS exam_day FROM reviews WHERE institution_id = %(inst)s AND announced_at IS NULL
), marked AS (
    UPDATE reviews SET announced_at = now()
     WHERE institution_id = %(inst)s AND announced_at IS NULL AND exam_day = (SELECT exam_day FROM first_day)
    RETURNING exam_day
)
SELECT exam_day::text AS exam_day, count(*)::int AS reviews FROM marked GROUP BY exam_day;
