-- Statistics the night can refresh. The night works as the least-privilege worker role, which does
-- not own GradeFlow's tables, and PostgreSQL (before 17's MAINTAIN privilege) lets only a table's
-- owner ANALYZE it: a worker's ANALYZE is skipped with a mere WARNING, so a fresh institution's first
-- big day was planned on statistics from when its tables were small (nested loops over 100,000s of
-- rows, statements cancelled by statement_timeout). This function runs ANALYZE with the owner's rights
-- on one of the tables the night fills, and nothing else. Statistics hold no rows a worker could read:
-- pg_stats hides every table under row-level security from a role it applies to.
CREATE FUNCTION gradeflow_analyse(p_table text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF p_table <> ALL (ARRAY['answers', 'submissions', 'grades', 'llm_requests', 'batch_lines', 'batch_jobs',
                             'review_queue', 'rejected_rows', 'ingested_files', 'review_items', 'reviews', 'exams',
                             'questions', 'release_results']) THEN
        RAISE EXCEPTION 'gradeflow_analyse: % is not a table the night may analyse', p_table;
    END IF;
    EXECUTE format('ANALYZE %I', p_table);
END $$;
REVOKE ALL ON FUNCTION gradeflow_analyse(text) FROM PUBLIC;
