-- Provider-neutral names (issue 13): the batch seam (gradeflow.grading.providers) has more than one
-- provider, the OpenAI Batch API and an OpenAI-compatible chat endpoint run as a local batch, so the
-- schema no longer says "openai". Renames keep every row, constraint and grant; the two SECURITY
-- DEFINER functions of 004 name the ledger table in their bodies (resolved when they run), so they are
-- re-created against the new name with the same signature, rights and checks.

ALTER TABLE openai_enqueued RENAME TO provider_enqueued;
ALTER INDEX openai_enqueued_live RENAME TO provider_enqueued_live;
ALTER INDEX openai_enqueued_pkey RENAME TO provider_enqueued_pkey;
ALTER TABLE provider_enqueued RENAME CONSTRAINT openai_enqueued_tokens_check TO provider_enqueued_tokens_check;
ALTER TABLE provider_enqueued RENAME CONSTRAINT openai_enqueued_job_id_fkey TO provider_enqueued_job_id_fkey;

ALTER TABLE batch_jobs RENAME COLUMN openai_batch_id TO provider_batch_id;
ALTER TABLE batch_jobs RENAME COLUMN openai_file_id TO provider_file_id;
ALTER INDEX batch_jobs_openai_batch_id_key RENAME TO batch_jobs_provider_batch_id_key;

-- Which provider ran (or will run) the job's batch: set when the job is written and again when it is
-- submitted; its batch is collected through the same provider. Jobs before this migration were all
-- OpenAI Batch API jobs.
ALTER TABLE batch_jobs ADD COLUMN provider text NOT NULL DEFAULT 'openai_batch'
    CONSTRAINT batch_jobs_provider_name CHECK (provider ~ '^[a-z][a-z0-9_]{1,39}$');

CREATE OR REPLACE FUNCTION gradeflow_reserve_enqueued(p_job bigint, p_tenant text, p_model text, p_tokens bigint,
                                                      p_cap bigint, p_share_cap bigint)
RETURNS TABLE (reserved boolean, org_tokens bigint, tenant_tokens bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bound text := nullif(current_setting('gradeflow.institution', true), '');
BEGIN
    IF bound IS NOT NULL AND bound <> p_tenant THEN
        RAISE EXCEPTION 'a connection bound to % cannot reserve enqueued tokens for %', bound, p_tenant;
    END IF;
    PERFORM pg_advisory_xact_lock(1869703523);  -- 0x6f616963, "oaic" (kept: the lock's identity, not a name)
    SELECT coalesce(sum(e.tokens), 0), coalesce(sum(e.tokens) FILTER (WHERE e.tenant = p_tenant), 0)
      INTO org_tokens, tenant_tokens
      FROM provider_enqueued e
     WHERE e.released_at IS NULL AND e.model = p_model AND e.job_id <> p_job;
    -- A job larger than the share on its own (configs change) may go alone if the organisation has room.
    reserved := org_tokens + p_tokens <= p_cap
                AND (tenant_tokens + p_tokens <= p_share_cap OR tenant_tokens = 0);
    IF reserved THEN
        INSERT INTO provider_enqueued (job_id, tenant, model, tokens) VALUES (p_job, p_tenant, p_model, p_tokens)
        ON CONFLICT (job_id) DO UPDATE SET tokens = EXCLUDED.tokens, reserved_at = now(), released_at = NULL;
    END IF;
    RETURN NEXT;
END $$;

CREATE OR REPLACE FUNCTION gradeflow_release_enqueued(p_job bigint, p_tenant text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bound text := nullif(current_setting('gradeflow.institution', true), '');
    n integer;
BEGIN
    IF bound IS NOT NULL AND bound <> p_tenant THEN
        RAISE EXCEPTION 'a connection bound to % cannot release enqueued tokens of %', bound, p_tenant;
    END IF;
    UPDATE provider_enqueued SET released_at = now()
     WHERE job_id = p_job AND tenant = p_tenant AND released_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
