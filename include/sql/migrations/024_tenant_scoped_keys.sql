-- Keys a tenant could take first (issue 15, residual of 019; docs/security.md "What a stolen connection
-- string can do"). Every unique key of a tenant table now carries institution_id or cannot be written by a
-- tenant at all, so no institution's row can pre-empt, block or probe another institution's:
--
-- 1. llm_requests.custom_id and batch_jobs.fingerprint were unique across all institutions and computable
--    from an exam's ids and an answer's hash, with no secret. A tenant that inserted another institution's
--    custom id first made that institution's request silently skipped (ON CONFLICT DO NOTHING), and its
--    fingerprint made the other's job creation fail on a row it cannot see. Both keys are now unique per
--    institution: (institution_id, custom_id) is llm_requests' primary key, (institution_id, fingerprint)
--    batch_jobs' identity. batch_jobs.provider_batch_id likewise, (institution_id, provider_batch_id).
-- 2. Surrogate keys (job_id, file_id, grade_id, ...) come from sequences all institutions share: a tenant
--    that wrote job_id = the next value (INSERT or UPDATE names any column it may write) made the next job
--    of every institution fail, and a duplicate-key error told it which ids exist. The worker group may now
--    write every column BUT those (column-level INSERT and UPDATE, re-granted by every migrate run); the
--    night never names them, their defaults fill them in.
--
-- Every query already joins these keys together with institution_id (custom ids are per institution in
-- every statement), so only the constraints and the one ON CONFLICT target (lifecycle/insert_job.sql) move.

ALTER TABLE llm_requests DROP CONSTRAINT llm_requests_pkey,
                         ADD CONSTRAINT llm_requests_pkey PRIMARY KEY (institution_id, custom_id);
ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_fingerprint_key,
                       ADD CONSTRAINT batch_jobs_fingerprint_key UNIQUE (institution_id, fingerprint);
ALTER TABLE batch_jobs DROP CONSTRAINT batch_jobs_provider_batch_id_key,
                       ADD CONSTRAINT batch_jobs_provider_batch_id_key UNIQUE (institution_id, provider_batch_id);

CREATE OR REPLACE FUNCTION gradeflow_enforce_isolation(worker name) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    secured integer := 0;
    tenant_expr constant text := 'institution_id = (SELECT gradeflow_role_institution())';
    writable text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), worker);
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), worker);
    FOR t IN
        SELECT c.oid, c.relname, c.relkind,
               coalesce('security_invoker=true' = ANY(c.reloptions) OR 'security_invoker=on' = ANY(c.reloptions),
                        false) AS invoker,
               EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'institution_id'
                          AND NOT a.attisdropped) AS tenant
          FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p', 'v')
    LOOP
        IF t.relkind = 'v' THEN
            IF NOT t.invoker THEN
                RAISE EXCEPTION 'view % reads with its owner''s rights, past row-level security: create it '
                                'WITH (security_invoker = true)', t.relname;
            END IF;
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
            EXECUTE format('GRANT SELECT ON %I TO %I', t.relname, worker);
            CONTINUE;
        END IF;
        IF NOT t.tenant THEN
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
            IF t.relname IN ('gradeflow_tenant_roles', 'gradeflow_org_limits', 'provider_enqueued',
                             'gradeflow_lock_generations') THEN
                -- the owner's: reached only through the definer functions
                EXECUTE format('REVOKE ALL ON %I FROM %I', t.relname, worker);
            ELSE  -- reference data: written by the migrate step, read by the night
                EXECUTE format('GRANT SELECT ON %I TO %I', t.relname, worker);
            END IF;
            CONTINUE;
        END IF;
        -- No table-wide INSERT, UPDATE, DELETE or TRUNCATE (UPDATE, DELETE and TRUNCATE would allow LOCK TABLE
        -- in any mode, INSERT in ROW EXCLUSIVE). Instead INSERT and UPDATE on every column but the surrogate
        -- keys drawn from a sequence all institutions share (024), so a tenant cannot write another
        -- institution's next id first. Revoking a table-wide privilege also revokes its column grants: they
        -- are granted again below, every run.
        EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
        EXECUTE format('GRANT SELECT ON %I TO %I', t.relname, worker);
        SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO writable
          FROM pg_attribute a
         WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = ''
           AND NOT EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                              AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%');
        EXECUTE format('GRANT INSERT (%s) ON %I TO %I', writable, t.relname, worker);
        IF t.relname <> 'audit_log' THEN  -- the audit log stays append-only
            EXECUTE format('GRANT UPDATE (%s) ON %I TO %I', writable, t.relname, worker);
        END IF;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t.relname);
        IF EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = t.relname
                      AND policyname = 'gradeflow_tenant') THEN
            EXECUTE format('ALTER POLICY gradeflow_tenant ON %I TO %I USING (%s) WITH CHECK (%s)',
                           t.relname, worker, tenant_expr, tenant_expr);
        ELSE
            EXECUTE format('CREATE POLICY gradeflow_tenant ON %I TO %I USING (%s) WITH CHECK (%s)',
                           t.relname, worker, tenant_expr, tenant_expr);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = t.relname
                          AND policyname = 'gradeflow_owner') THEN
            EXECUTE format('CREATE POLICY gradeflow_owner ON %I TO CURRENT_USER USING (true) WITH CHECK (true)',
                           t.relname);
        END IF;
        secured := secured + 1;
    END LOOP;
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA %I TO %I', current_schema(), worker);
    -- The functions the night calls; every other definer function stays the owner's (and the triggers').
    EXECUTE format('GRANT EXECUTE ON FUNCTION gradeflow_role_institution(), gradeflow_lock_key(text), '
                   'gradeflow_reserve_enqueued(bigint, text, text, bigint, bigint, bigint), '
                   'gradeflow_release_enqueued(bigint, text), gradeflow_analyse(text), '
                   'gradeflow_delete_questions(text, text) TO %I', worker);
    RETURN secured;
END
$$;
REVOKE ALL ON FUNCTION gradeflow_enforce_isolation(name) FROM PUBLIC;
