-- When GradeFlow did each step of the day, from its own records (no extra bookkeeping needed):
-- files ingested, rule grading, each batch job from submission to collection, gate runs and releases.
SELECT 'files ingested' AS step, min(ingested_at) AS started, max(ingested_at) AS finished
  FROM ingested_files WHERE institution_id = %(inst)s AND exam_day = %(day)s
HAVING count(*) > 0
UNION ALL
SELECT 'graded by rule', min(graded_at), max(graded_at)
  FROM grades WHERE institution_id = %(inst)s AND exam_day = %(day)s AND grader = 'rule'
HAVING count(*) > 0
UNION ALL
SELECT 'batch job ' || job_id || ' (attempt ' || attempt || ')', coalesce(submitted_at, created_at),
       coalesce(collected_at, finished_at, submitted_at, created_at)
  FROM batch_jobs WHERE institution_id = %(inst)s AND exam_day = %(day)s
UNION ALL
SELECT 'release gate', min(created_at), max(created_at)
  FROM validation_runs WHERE institution_id = %(inst)s AND exam_day = %(day)s
HAVING count(*) > 0
UNION ALL
SELECT 'release v' || version, released_at, released_at
  FROM releases WHERE institution_id = %(inst)s AND exam_day = %(day)s
ORDER BY 2, 1;
