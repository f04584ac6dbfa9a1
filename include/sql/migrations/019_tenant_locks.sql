-- Availability from inside (issue 15, residuals of 016; docs/security.md): a tenant's login can no longer
-- lock the other institutions out.
--
-- 1. Table locks. PostgreSQL 16's LOCK TABLE allows ANY mode to a role with UPDATE, DELETE or TRUNCATE on
--    the table, ROW EXCLUSIVE and weaker with INSERT, ACCESS SHARE with SELECT; the check
--    (LockTableAclCheck, pg_class_aclcheck) looks at the TABLE's privileges only, never at column
--    privileges. So the worker group keeps SELECT and INSERT on each tenant table, loses the table-wide
--    UPDATE, DELETE and TRUNCATE, and gets UPDATE on every column instead (column-level grants: every
--    UPDATE, ON CONFLICT DO UPDATE and SELECT ... FOR UPDATE the night runs still works, under the same
--    row-level security). A tenant's LOCK TABLE then stops at ROW EXCLUSIVE, the mode every INSERT
--    takes: it conflicts with no statement of another institution (only with SHARE and stronger, i.e.
--    DDL, which the migrate step runs under lock_timeout). The one DELETE the night ran on a tenant
--    table (an exam's questions, redefined before it has answers) goes through a definer function.
-- 2. Advisory locks. The per-institution keys (ingest, grade night, release, rerun) come from
--    gradeflow_lock_key(purpose), keyed on the institution's secret; pg_locks shows a held key to every
--    role, so another tenant could take a key it has seen once it was let go. gradeflow_lock_key now
--    also carries a generation per (institution, purpose): when the current key is held by a session of
--    ANOTHER login, the generation moves on and the caller gets a fresh key nobody holds (a squatter
--    keeps a key nobody uses any more). Sessions of the institution's own login still exclude each other.
-- 3. The organisation's ledger lock was a fixed advisory key (1869703523) any session could take.
--    Reservations now serialise on LOCK TABLE provider_enqueued IN SHARE ROW EXCLUSIVE MODE inside the
--    definer function: the worker has no privilege on provider_enqueued, so no tenant can take that lock
--    outside the function.

-- Key generations of the per-institution advisory locks: owner-only (no institution_id: not a tenant table).
CREATE TABLE gradeflow_lock_generations (
    institution  text NOT NULL REFERENCES institutions,
    purpose      text NOT NULL,
    generation   integer NOT NULL CHECK (generation > 0),
    moved_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (institution, purpose)
);
REVOKE ALL ON gradeflow_lock_generations FROM PUBLIC;

DROP FUNCTION gradeflow_lock_key(text);
CREATE FUNCTION gradeflow_lock_key(p_purpose text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    t record;
    gen integer;
    key bigint;
BEGIN
    SELECT r.institution, r.lock_secret INTO t FROM public.gradeflow_tenant_roles r WHERE r.role_name = session_user;
    IF NOT FOUND THEN
        RETURN NULL;  -- not a tenant login
    END IF;
    FOR attempt IN 1..5 LOOP
        SELECT g.generation INTO gen FROM public.gradeflow_lock_generations g
         WHERE g.institution = t.institution AND g.purpose = p_purpose;
        gen := coalesce(gen, 0);
        key := hashtextextended(t.lock_secret || ':' || t.institution || ':' || p_purpose || ':' || gen, 0);
        -- A bigint key shows in pg_locks as classid = its high 32 bits, objid = its low 32 bits, objsubid = 1.
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
                        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                          AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                             WHERE d.datname = current_database())
                          AND l.classid = ((key >> 32) & 4294967295)::oid AND l.objid = (key & 4294967295)::oid
                          AND a.usename IS DISTINCT FROM session_user) THEN
            RETURN key;
        END IF;
        RAISE WARNING 'advisory lock % of institution % is held by a session of another login: moving to a new key',
                      p_purpose, t.institution;
        INSERT INTO public.gradeflow_lock_generations (institution, purpose, generation)
        VALUES (t.institution, p_purpose, gen + 1)
        ON CONFLICT (institution, purpose) DO UPDATE
           SET generation = greatest(gradeflow_lock_generations.generation, EXCLUDED.generation), moved_at = now();
    END LOOP;
    RETURN key;
END $$;
REVOKE ALL ON FUNCTION gradeflow_lock_key(text) FROM PUBLIC;

-- An exam redefined before it has answers loses its old questions: the night's only DELETE on a tenant table.
CREATE FUNCTION gradeflow_delete_questions(p_inst text, p_exam text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    mine constant text := public.gradeflow_role_institution();
    n integer;
BEGIN
    IF mine IS DISTINCT FROM p_inst AND NOT (mine IS NULL AND session_user = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %s may delete only its own institution''s questions', session_user);
    END IF;
    DELETE FROM public.questions q WHERE q.institution_id = p_inst AND q.exam_id = p_exam;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
REVOKE ALL ON FUNCTION gradeflow_delete_questions(text, text) FROM PUBLIC;

-- The ledger, serialised on a table lock only the definer functions can take (body otherwise as in 016).
CREATE OR REPLACE FUNCTION gradeflow_reserve_enqueued(p_job bigint, p_tenant text, p_model text, p_tokens bigint,
                                                      p_cap bigint, p_share_cap bigint)
RETURNS TABLE (reserved boolean, org_tokens bigint, tenant_tokens bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    mine constant text := public.gradeflow_role_institution();
    cap bigint := p_cap;
    share_cap bigint := p_share_cap;
BEGIN
    IF mine IS NULL OR mine IS DISTINCT FROM p_tenant
       OR NOT EXISTS (SELECT 1 FROM public.batch_jobs j WHERE j.job_id = p_job AND j.institution_id = mine) THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %s may reserve enqueued tokens only for its own institution''s jobs', session_user);
    END IF;
    SELECT least(cap, l.value) INTO cap FROM public.gradeflow_org_limits l WHERE l.name = 'enqueued_token_cap';
    SELECT least(share_cap, l.value) INTO share_cap FROM public.gradeflow_org_limits l
     WHERE l.name = 'institution_token_cap';
    cap := coalesce(cap, p_cap);
    share_cap := coalesce(share_cap, p_share_cap);
    -- One reserver at a time across the organisation (SHARE ROW EXCLUSIVE conflicts with itself), until commit.
    LOCK TABLE public.provider_enqueued IN SHARE ROW EXCLUSIVE MODE;
    SELECT coalesce(sum(e.tokens), 0), coalesce(sum(e.tokens) FILTER (WHERE e.tenant = mine), 0)
      INTO org_tokens, tenant_tokens
      FROM public.provider_enqueued e
     WHERE e.released_at IS NULL AND e.model = p_model AND e.job_id <> p_job;
    reserved := p_tokens >= 0 AND org_tokens + p_tokens <= cap
                AND (tenant_tokens + p_tokens <= share_cap OR tenant_tokens = 0);
    IF reserved THEN
        INSERT INTO public.provider_enqueued (job_id, tenant, model, tokens) VALUES (p_job, mine, p_model, p_tokens)
        ON CONFLICT (job_id) DO UPDATE SET tokens = EXCLUDED.tokens, reserved_at = now(), released_at = NULL;
    END IF;
    RETURN NEXT;
END $$;
REVOKE ALL ON FUNCTION gradeflow_reserve_enqueued(bigint, text, text, bigint, bigint, bigint) FROM PUBLIC;

-- 016's isolation, with the night's writes as column-level UPDATE grants (see 1. above). Run by migrate
-- after every migration run: tables later migrations add get the same.
CREATE OR REPLACE FUNCTION gradeflow_enforce_isolation(worker name) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    secured integer := 0;
    tenant_expr constant text := 'institution_id = (SELECT gradeflow_role_institution())';
    columns text;
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
        -- No table-wide UPDATE, DELETE or TRUNCATE (each would allow LOCK TABLE in any mode). Revoking the
        -- table-wide UPDATE also revokes column grants, so they are granted again below, every run.
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
        EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', t.relname, worker);
        IF t.relname <> 'audit_log' THEN  -- the audit log stays append-only
            SELECT string_agg(format('%I', a.attname), ', ' ORDER BY a.attnum) INTO columns
              FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped;
            EXECUTE format('GRANT UPDATE (%s) ON %I TO %I', columns, t.relname, worker);
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
