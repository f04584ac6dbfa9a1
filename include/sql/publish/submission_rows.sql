-- One row per submission of a release: totals and how its answers were graded or why they wait.
-- Ordered by exam and submission in byte order (COLLATE "C"), as results-v<N>.parquet (publish.export).
SELECT institution_id, exam_day, version, exam_id, submission_id, student_id,
       coalesce(sum(score) FILTER (WHERE status = 'graded'), 0)::float8 AS total_score,
       sum(max_points)::float8 AS total_max,
       round(100 * coalesce(sum(score) FILTER (WHERE status = 'graded'), 0) / nullif(sum(max_points), 0), 2)::float8
           AS percent,
       count(*)::int AS answers,
       count(*) FILTER (WHERE grader = 'rule')::int AS graded_rule,
       count(*) FILTER (WHERE grader = 'llm')::int AS graded_model,
       count(*) FILTER (WHERE grader = 'human')::int AS graded_human,
       count(*) FILTER (WHERE status = 'pending')::int AS pending,
       count(*) FILTER (WHERE status = 'pending') = 0 AS complete
  FROM release_results
 WHERE release_id = %(release_id)s AND institution_id = %(inst)s
 GROUP BY institution_id, exam_day, version, exam_id, submission_id, student_id
 ORDER BY exam_id COLLATE "C", submission_id COLLATE "C";
