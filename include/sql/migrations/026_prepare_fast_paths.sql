-- Prepare's hot paths (issue 18, the prepare group).
--
-- Queueing a job's requests (lifecycle/queue.sql) sets llm_requests.job_id on every request of the job, so
-- the reference llm_requests -> batch_jobs is checked once per row (020: a key update is checked per row, only
-- when the key changed). 020's generic check builds its query text and plans it on every call: at 200,000
-- answers that was 5.8 s of the 11.9 s of batch building (17,680 rows, 0.33 ms each; EXPLAIN ANALYZE
-- "Trigger llm_requests_institution_id_job_id_ref_upd: time=5779 calls=17680"). The function keeps its
-- name, arguments, triggers and meaning; this one reference gets a path in static SQL, whose plan PL/pgSQL
-- keeps (0.8 s for the same rows, against 0.7 s with no check at all). Every other reference is unchanged.

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

-- Rule grading (prepare/grade_by_rule.sql) scores every objective answer of the day with
-- gradeflow_rule_score_keyed, which PostgreSQL inlines into the statement. The true/false parser it calls was
-- declared STRICT with a body that is not (a CASE), and a STRICT SQL function whose body is not strict is never
-- inlined: each true/false answer paid a SQL function call (with its own executor) per row. The same body
-- without STRICT gives the same results (NULL in, NULL out, as the CASE already does) and is inlined.
-- (gradeflow_parse_number cannot be: its body calls pg_input_is_valid, which is only STABLE.)
CREATE OR REPLACE FUNCTION gradeflow_parse_bool(t text) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE CALLED ON NULL INPUT
    RETURN CASE WHEN lower(gradeflow_strip(t)) IN ('true', 't', 'yes', 'y', '1') THEN true
                WHEN lower(gradeflow_strip(t)) IN ('false', 'f', 'no', 'n', '0') THEN false END;
