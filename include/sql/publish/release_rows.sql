-- One row per answer of a release (results-v<N>.parquet), unordered: the export sorts the rows by exam,
-- submission and question in Arrow, in byte order (publish._write_parquet, RESULTS_ORDER). PostgreSQL's sort of
-- the day's wide rows cost more than the rest of the read (issue 18).
SELECT institution_id, exam_day, version, exam_id, submission_id, student_id, question_id, question_type, status,
       score::float8 AS score, max_points::float8 AS max_points, grader, model, confidence::float8 AS confidence,
       rationale, pending_reason, review_reason, grading_version, suggested_score::float8 AS suggested_score,
       criteria::text AS criteria, origin
  FROM release_results
 WHERE release_id = %(release_id)s AND institution_id = %(inst)s;
