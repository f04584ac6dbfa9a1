-- Isolation enforced by PostgreSQL (see docs/security.md).
--
-- gradeflow_enforce_isolation(worker) is run by gradeflow.db.migrate() after EVERY migration run,
-- so a table added by a later migration is covered without anyone remembering to: each table of
-- this schema with an institution_id column gets row-level security, enabled and FORCEd, with
--   * gradeflow_tenant: the worker role sees and writes only the rows of the institution its
--     connection is bound to (the gradeflow.institution setting; unset = zero rows);
--   * gradeflow_owner: the role that runs migrations (the table owner) keeps full access, explicitly
--     (FORCE makes RLS apply to the owner too, so a role that inherits ownership gets nothing for free).
-- The worker gets DML on every tenant table (no DDL, no TRUNCATE), INSERT/SELECT only on audit_log
-- (append-only), SELECT only on tables without institution_id (reference data the migrate step
-- writes: schema_migrations, review_reasons), and SELECT on views only when they are
-- `security_invoker` (otherwise a view reads with its owner's rights, past row-level security:
-- the migration fails naming it). Materialized views cannot carry RLS: the worker gets none.
-- Idempotent: safe to run any number of times.

CREATE OR REPLACE FUNCTION gradeflow_enforce_isolation(worker name) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t record;
    secured integer := 0;
    tenant_expr constant text := $e$institution_id = current_setting('gradeflow.institution', true)$e$;
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
        IF NOT t.tenant THEN  -- reference data: written by the migrate step, read by the night
            EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
            EXECUTE format('GRANT SELECT ON %I TO %I', t.relname, worker);
            CONTINUE;
        END IF;
        IF t.relname = 'audit_log' THEN  -- the record of who did what: the night appends, never rewrites
            EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM %I', t.relname, worker);
            EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', t.relname, worker);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t.relname, worker);
        END IF;
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t.relname);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t.relname);
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = t.relname
                          AND policyname = 'gradeflow_tenant') THEN
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
    RETURN secured;
END
$$;

-- One read-only role per institution for its release tables: what its analysts are given
-- (GRANT gradeflow_ro_<id> TO <analyst login>). Its policy names the institution literally and
-- applies only to that role, so no setting an analyst can change widens what it sees.
CREATE OR REPLACE FUNCTION gradeflow_grant_reader(reader name, institution text, release_tables text[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    tbl text;
    policy name := 'gradeflow_reader_' || institution;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = reader) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', reader);
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), reader);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', current_schema(), reader);
    FOREACH tbl IN ARRAY release_tables LOOP
        EXECUTE format('GRANT SELECT ON %I TO %I', tbl, reader);
        IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE schemaname = current_schema() AND tablename = tbl
                          AND policyname = policy) THEN
            EXECUTE format('CREATE POLICY %I ON %I FOR SELECT TO %I USING (institution_id = %L)',
                           policy, tbl, reader, institution);
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION gradeflow_enforce_isolation(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION gradeflow_grant_reader(name, text, text[]) FROM PUBLIC;
