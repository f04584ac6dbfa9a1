-- A tenant boundary that holds against code holding a password (issue 15, docs/security.md).
--
-- Until now every task logged in as one shared worker role, and row-level security compared each row
-- with the session setting gradeflow.institution: a setting any session may change (set_config), so
-- the boundary held against our own queries' mistakes, not against code with the worker's password.
-- From here on:
--   * each institution's tasks log in as their own role gradeflow_worker_<id> (created by the migrate
--     step, a member of the group role gradeflow_worker that holds the table grants);
--   * gradeflow_tenant_roles maps a login role to its institution, and the policies compare each row
--     with gradeflow_role_institution(): the institution of the SESSION's login role, which no SQL the
--     session runs can change (session_user changes only through SET SESSION AUTHORIZATION, superuser
--     only). A login that is not in the map (the old shared worker login) sees and writes no row;
--   * every SECURITY DEFINER function pins search_path = pg_catalog, public, pg_temp (pg_temp last: a
--     temporary table cannot shadow one of ours), is not executable by PUBLIC, and the two ledger
--     functions take the caller's institution from its role, never from an argument alone;
--   * references between tenant rows carry institution_id, so no row can point at another institution's
--     row and the error for another institution's id is the same as for an id that does not exist.

-- Login role -> institution. Global (no institution_id column): only the owner reads it, the night
-- reaches it through gradeflow_role_institution(). lock_secret keys the institution's advisory locks.
CREATE TABLE gradeflow_tenant_roles (
    role_name    name PRIMARY KEY,
    institution  text NOT NULL UNIQUE REFERENCES institutions,
    lock_secret  text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', '')
);
REVOKE ALL ON gradeflow_tenant_roles FROM PUBLIC;

-- The organisation's limits, written by the migrate step from include/institutions.yaml (openai:), so a
-- caller of gradeflow_reserve_enqueued cannot lift the cap by passing a bigger one.
CREATE TABLE gradeflow_org_limits (
    name   text PRIMARY KEY,
    value  bigint NOT NULL CHECK (value >= 0)
);
REVOKE ALL ON gradeflow_org_limits FROM PUBLIC;

-- The institution of the session's login role (NULL: not a tenant login). Policies call it as
-- (SELECT gradeflow_role_institution()), an init plan: once per statement, not once per row.
CREATE FUNCTION gradeflow_role_institution() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT t.institution FROM public.gradeflow_tenant_roles t WHERE t.role_name = session_user
$$;
REVOKE ALL ON FUNCTION gradeflow_role_institution() FROM PUBLIC;

-- An advisory-lock key for one of the caller's own institution's purposes ('ingest', 'publish:<day>', …):
-- derived from a secret of the institution that no other tenant can read, so another tenant cannot
-- compute the key in advance and take the lock first. NULL for a login that is no tenant.
CREATE FUNCTION gradeflow_lock_key(p_purpose text) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT hashtextextended(t.lock_secret || ':' || t.institution || ':' || p_purpose, 0)
      FROM public.gradeflow_tenant_roles t WHERE t.role_name = session_user
$$;
REVOKE ALL ON FUNCTION gradeflow_lock_key(text) FROM PUBLIC;

-- The ledger: the caller reserves only for its own institution (from its role) and only for one of its
-- own jobs; the caps are the organisation's (gradeflow_org_limits) whatever the caller passes.
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
    PERFORM pg_catalog.pg_advisory_xact_lock(1869703523);  -- 0x6f616963, "oaic"
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

CREATE OR REPLACE FUNCTION gradeflow_release_enqueued(p_job bigint, p_tenant text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    mine constant text := public.gradeflow_role_institution();
    n integer;
BEGIN
    IF mine IS NULL OR mine IS DISTINCT FROM p_tenant THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
            MESSAGE = format('role %s may release enqueued tokens only of its own institution', session_user);
    END IF;
    UPDATE public.provider_enqueued SET released_at = now()
     WHERE job_id = p_job AND tenant = mine AND released_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Every definer function of the schema, including those earlier migrations made with
-- `SET search_path FROM CURRENT` ("$user", public, and pg_temp implicitly FIRST): pg_temp last, and no
-- EXECUTE for PUBLIC (migrate grants it back to the worker group only where the night needs it).
DO $$
DECLARE f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
              WHERE p.pronamespace = current_schema()::regnamespace AND p.prosecdef LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f.fn);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.fn);
    END LOOP;
END $$;

-- References that carry institution_id. Each single-column reference from a tenant row to another
-- tenant row (a foreign key, or 010's statement-level check) is replaced by 010's statement-level
-- check on (institution_id, column): a row can only point at a row of its own institution, and the
-- error for another institution's id is the one for an id that does not exist (the check runs as the
-- owner, but the key it looks for carries the writer's institution). Trigger names start with
-- "<table>_0_" so the new check fires before any older single-column one (triggers of one event fire
-- in name order): an older check that does find another institution's id never gets to answer.
CREATE FUNCTION gradeflow_tenant_reference(child text, col text, parent text, parent_col text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    fk name;
    old_ref text := child || '_' || col || '_ref';
    ref text := child || '_0_' || col || '_tenant_ref';
    cols text := 'institution_id,' || col;
    parent_cols text := 'institution_id,' || parent_col;
BEGIN
    FOR fk IN SELECT c.conname FROM pg_constraint c
               WHERE c.contype = 'f' AND c.conrelid = child::regclass AND c.confrelid = parent::regclass
                 AND c.conkey = ARRAY[(SELECT a.attnum FROM pg_attribute a
                                        WHERE a.attrelid = child::regclass AND a.attname = col)] LOOP
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', child, fk);
    END LOOP;
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', old_ref || '_ins', child);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', old_ref || '_upd', child);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', old_ref || '_del', parent);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', old_ref || '_pupd', parent);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_ins', child,
                   'child', ref, parent, cols, parent_cols);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_upd', child,
                   'child', ref, parent, cols, parent_cols);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_del', parent,
                   'parent', ref, child, parent_cols, cols);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF institution_id, %I ON %I FOR EACH ROW '
                   'WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.%I IS DISTINCT FROM NEW.%I) '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_pupd',
                   parent_col, parent, parent_col, parent_col, 'parent', ref, child, parent_cols, cols);
END $$;

SELECT gradeflow_tenant_reference('submissions', 'source_file_id', 'ingested_files', 'file_id');
SELECT gradeflow_tenant_reference('answers', 'source_file_id', 'ingested_files', 'file_id');
SELECT gradeflow_tenant_reference('exams', 'source_file_id', 'ingested_files', 'file_id');
SELECT gradeflow_tenant_reference('ingested_files', 'duplicate_of', 'ingested_files', 'file_id');
SELECT gradeflow_tenant_reference('rejected_rows', 'file_id', 'ingested_files', 'file_id');
SELECT gradeflow_tenant_reference('reviews', 'file_id', 'ingested_files', 'file_id');
SELECT gradeflow_tenant_reference('reviews', 'review_id', 'review_items', 'review_id');
SELECT gradeflow_tenant_reference('review_queue', 'review_item', 'review_items', 'review_id');
SELECT gradeflow_tenant_reference('grades', 'review_id', 'review_items', 'review_id');
SELECT gradeflow_tenant_reference('grades', 'review_line_id', 'reviews', 'review_line_id');
SELECT gradeflow_tenant_reference('grades', 'job_id', 'batch_jobs', 'job_id');
SELECT gradeflow_tenant_reference('llm_requests', 'job_id', 'batch_jobs', 'job_id');
SELECT gradeflow_tenant_reference('batch_lines', 'job_id', 'batch_jobs', 'job_id');
SELECT gradeflow_tenant_reference('batch_lines', 'custom_id', 'llm_requests', 'custom_id');
SELECT gradeflow_tenant_reference('releases', 'validation_id', 'validation_runs', 'validation_id');

DROP FUNCTION gradeflow_tenant_reference(text, text, text, text);

-- The row-level security of 003, bound to the role instead of the session setting. Same function,
-- run by migrate after every migration run; existing gradeflow_tenant policies are re-pointed.
CREATE OR REPLACE FUNCTION gradeflow_enforce_isolation(worker name) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    secured integer := 0;
    tenant_expr constant text := 'institution_id = (SELECT gradeflow_role_institution())';
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), worker);
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), worker);
    FOR t IN
        SELECT c.relname, c.relkind,
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
            EXECUTE format('GRANT SELECT ON %I TO %I', t.relname, worker);
            CONTINUE;
        END IF;
        IF NOT t.tenant THEN
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
            IF t.relname IN ('gradeflow_tenant_roles', 'gradeflow_org_limits', 'provider_enqueued') THEN
                -- the owner's: reached only through the definer functions above
                EXECUTE format('REVOKE ALL ON %I FROM %I', t.relname, worker);
            ELSE  -- reference data: written by the migrate step, read by the night
                EXECUTE format('GRANT SELECT ON %I TO %I', t.relname, worker);
            END IF;
            CONTINUE;
        END IF;
        IF t.relname = 'audit_log' THEN
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
            EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', t.relname, worker);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t.relname, worker);
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
                   'gradeflow_release_enqueued(bigint, text), gradeflow_analyse(text) TO %I', worker);
    RETURN secured;
END
$$;
REVOKE ALL ON FUNCTION gradeflow_enforce_isolation(name) FROM PUBLIC;

-- One login per institution, a member of the worker group (its grants, its policies), mapped to the
-- institution. Called by migrate for every institution in include/institutions.yaml.
CREATE FUNCTION gradeflow_tenant_login(login name, institution text, worker name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION',
                       login);
    END IF;
    EXECUTE format('GRANT %I TO %I', worker, login);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), login);
    INSERT INTO gradeflow_tenant_roles (role_name, institution) VALUES (login, institution)
    ON CONFLICT (role_name) DO UPDATE SET institution = EXCLUDED.institution;
END $$;
REVOKE ALL ON FUNCTION gradeflow_tenant_login(name, text, name) FROM PUBLIC;
