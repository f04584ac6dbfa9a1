-- Ingest's reference checks (issue 18 item 2).
--
-- Every file an ingest loads inserts its submissions and its answers with one statement each, and 020's statement-level
-- checks of their locking references (answers -> submissions, questions, ingested_files; submissions -> exams,
-- institutions, ingested_files) then locked and looked up a parent once per inserted row, in two passes over the
-- statement's rows: a file's 40,000 answers name about 5,000 submissions, 30 questions and one file, and the three
-- checks of its answers took 0.55-0.7 s of a 1.7-2.3 s insert (EXPLAIN ANALYZE at 200,000 answers, load 5-8,
-- 2026-12-07). Such a check now takes each distinct key of the statement's rows once and locks and counts their
-- parents in the same pass: 0.05-0.12 s for the same rows. The second pass, which names the missing key, runs
-- only when one is missing.
--
-- Nothing else changes: the same function, arguments, triggers and names; the parents still locked FOR KEY SHARE
-- before the statement ends (a concurrent delete waits for the commit, then sees the child); the same error (code,
-- reference name, message, detail). References that do not lock (010's and 016's, mostly one row to one parent:
-- grades -> answers), every per-row check and every parent-side check keep 020's and 026's paths: de-duplicating
-- keys that are already distinct would only add work there.
--
-- Not done: skipping the lock of parents the same transaction inserted (xmin = the current transaction's id). With
-- each key locked once, locking a file's 5,000 new submissions costs no measurable time, and a frozen row keeps its
-- raw xmin, which after a wraparound can equal the current transaction's id.

CREATE OR REPLACE FUNCTION gradeflow_check_reference() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
-- TG_ARGV: 0 'child' (rows of this table must find their referenced row) or 'parent' (rows of this table
-- that went away, or whose key changed, must not be referenced), 1 the reference's name, 2 the other table,
-- 3 this table's columns, 4 the other table's columns (comma-separated, in the same order), 5 (child only,
-- optional) 'lock': lock the referenced rows FOR KEY SHARE until commit.
DECLARE
    mine text[] := string_to_array(TG_ARGV[3], ',');
    theirs text[] := string_to_array(TG_ARGV[4], ',');
    rows_from text;
    joined text;
    set_cols text;
    key_list text;
    bad text;
    keys text;
    parent_keys text;
    complete boolean;
BEGIN
    -- 026: a model request's job (lifecycle/queue.sql sets it on every request of a job, requeue clears it) is
    -- checked in static SQL, its plan kept for the session: the generic per-row path below builds and plans
    -- its query on every row (~0.3 ms each: 5-6 s of prepare's 11 s at 200,000 answers). Same meaning and
    -- the same error as the generic path.
    IF TG_LEVEL = 'ROW' AND TG_ARGV[0] = 'child' AND TG_ARGV[1] = 'llm_requests_institution_id_job_id_ref'
       AND TG_ARGV[5] IS NULL AND TG_TABLE_NAME = 'llm_requests' THEN
        IF NEW.institution_id IS NOT NULL AND NEW.job_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM public.batch_jobs p
                            WHERE p.institution_id = NEW.institution_id AND p.job_id = NEW.job_id) THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('insert or update on table "%s" violates reference "%s"', TG_TABLE_NAME, TG_ARGV[1]),
                DETAIL = format('Key (%s)=(%s) is not present in table "%s".', TG_ARGV[3],
                                NEW.institution_id::text || ', ' || NEW.job_id::text, TG_ARGV[2]);
        END IF;
        RETURN NULL;
    END IF;
    -- 032: a locking reference (009's four of answers and submissions, and theirs to their files: the references an
    -- ingest writes, many rows to one parent) takes each distinct key of the statement's rows once, and locks and
    -- counts the parents they name in one pass: as many distinct parent keys locked as distinct keys named means
    -- none is missing. Only when one is does the check below name it (a second pass, which locks again first).
    IF TG_ARGV[0] = 'child' AND TG_LEVEL = 'STATEMENT' AND TG_ARGV[5] IS NOT DISTINCT FROM 'lock' THEN
        SELECT string_agg(format('p.%I = n.%I', theirs[i], mine[i]), ' AND '),
               string_agg(format('n.%I IS NOT NULL', mine[i]), ' AND '),
               string_agg(format('n.%I::text', mine[i]), ' || '', '' || '),
               string_agg(format('n.%I', mine[i]), ', '),
               string_agg(format('p.%I', theirs[i]), ', ')
          INTO joined, set_cols, key_list, keys, parent_keys
          FROM generate_subscripts(mine, 1) AS i;
        EXECUTE format('WITH n AS MATERIALIZED (SELECT DISTINCT %s FROM new_rows n WHERE %s) '
                       'SELECT (SELECT count(*) FROM n) = (SELECT count(DISTINCT (%s)) FROM (SELECT %s FROM public.%I p '
                       'WHERE EXISTS (SELECT 1 FROM n WHERE %s) FOR KEY SHARE OF p) p)',
                       keys, set_cols, parent_keys, parent_keys, TG_ARGV[2], joined)
           INTO complete;
        IF complete THEN
            RETURN NULL;
        END IF;
        rows_from := format('(SELECT DISTINCT %s FROM new_rows n WHERE %s) n', keys, set_cols);
        EXECUTE format('SELECT 1 FROM public.%I p WHERE EXISTS (SELECT 1 FROM %s WHERE %s) FOR KEY SHARE OF p',
                       TG_ARGV[2], rows_from, joined);
        EXECUTE format('SELECT %s FROM %s WHERE NOT EXISTS (SELECT 1 FROM public.%I p WHERE %s) LIMIT 1',
                       key_list, rows_from, TG_ARGV[2], joined)
           INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('insert or update on table "%s" violates reference "%s"', TG_TABLE_NAME, TG_ARGV[1]),
                DETAIL = format('Key (%s)=(%s) is not present in table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
        RETURN NULL;
    END IF;
    IF TG_ARGV[0] = 'child' THEN
        -- Per statement: the statement's new rows; per row (a key update): this row.
        rows_from := CASE WHEN TG_LEVEL = 'ROW' THEN 'jsonb_populate_record(NULL::public.' || quote_ident(TG_TABLE_NAME)
                                                      || ', $1)' ELSE 'new_rows' END;
        SELECT string_agg(format('p.%I = n.%I', theirs[i], mine[i]), ' AND '),
               string_agg(format('n.%I IS NOT NULL', mine[i]), ' AND '),
               string_agg(format('n.%I::text', mine[i]), ' || '', '' || ')
          INTO joined, set_cols, key_list
          FROM generate_subscripts(mine, 1) AS i;
        IF TG_ARGV[5] IS NOT DISTINCT FROM 'lock' THEN
            EXECUTE format('SELECT 1 FROM public.%I p WHERE EXISTS (SELECT 1 FROM %s n WHERE %s) FOR KEY SHARE OF p',
                           TG_ARGV[2], rows_from, joined)
              USING CASE WHEN TG_LEVEL = 'ROW' THEN to_jsonb(NEW) END;
        END IF;
        EXECUTE format('SELECT %s FROM %s n WHERE %s AND NOT EXISTS (SELECT 1 FROM public.%I p WHERE %s) LIMIT 1',
                       key_list, rows_from, set_cols, TG_ARGV[2], joined)
           INTO bad USING CASE WHEN TG_LEVEL = 'ROW' THEN to_jsonb(NEW) END;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('insert or update on table "%s" violates reference "%s"', TG_TABLE_NAME, TG_ARGV[1]),
                DETAIL = format('Key (%s)=(%s) is not present in table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    ELSIF TG_LEVEL = 'ROW' THEN
        -- A referenced row's key changed (fires only when a key column is set to a new value, which
        -- GradeFlow never does): no row may still point at the old key.
        SELECT string_agg(format('c.%I::text = ($1 ->> %L)', theirs[i], mine[i]), ' AND '),
               string_agg(format('($1 ->> %L)', mine[i]), ' || '', '' || ')
          INTO joined, key_list
          FROM generate_subscripts(mine, 1) AS i;
        EXECUTE format('SELECT %s WHERE EXISTS (SELECT 1 FROM public.%I c WHERE %s)', key_list, TG_ARGV[2], joined)
           USING to_jsonb(OLD) INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('update on table "%s" violates reference "%s" on table "%s"',
                                 TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[2]),
                DETAIL = format('Key (%s)=(%s) is still referenced from table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    ELSE
        -- Keys of this (referenced) table that the statement removed and that no row has any more ...
        SELECT string_agg(format('c.%I = o.%I', theirs[i], mine[i]), ' AND '),
               string_agg(format('k.%I = o.%I', mine[i], mine[i]), ' AND '),
               string_agg(format('o.%I::text', mine[i]), ' || '', '' || ')
          INTO joined, set_cols, key_list
          FROM generate_subscripts(mine, 1) AS i;
        -- ... and that a row of the referencing table still points at.
        EXECUTE format('SELECT %s FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM public.%I k WHERE %s) '
                       'AND EXISTS (SELECT 1 FROM public.%I c WHERE %s) LIMIT 1',
                       key_list, TG_TABLE_NAME, set_cols, TG_ARGV[2], joined)
           INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('update or delete on table "%s" violates reference "%s" on table "%s"',
                                 TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[2]),
                DETAIL = format('Key (%s)=(%s) is still referenced from table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION gradeflow_check_reference() FROM PUBLIC;
