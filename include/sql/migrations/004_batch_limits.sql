-- The Batch API at production limits (issue 6): exact token estimates and a ledger of estimated vs
-- actual tokens and cost per line and attempt; nights (the grade night a job belongs to, which may be
-- later than its exam day: carry-over and late answers); a shared reservation ledger for the API
-- organisation's enqueued-token cap.

-- Model requests: the estimate split into input (exact, by the model's tokenizer) and expected output;
-- `sends` counts every time the line went into a batch (attempt counts only the sends that ran or could
-- have run: a batch refused for the enqueued-token cap gives its attempt back); it keeps each retry's
-- batch fingerprint new. status_changed_at tells publish which days changed since their last release.
ALTER TABLE llm_requests
    ADD COLUMN est_input_tokens  integer,
    ADD COLUMN est_output_tokens integer,
    ADD COLUMN sends             integer NOT NULL DEFAULT 0,
    ADD COLUMN status_changed_at timestamptz NOT NULL DEFAULT now();

CREATE FUNCTION llm_requests_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        NEW.status_changed_at := clock_timestamp();
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER llm_requests_touch BEFORE UPDATE OF status ON llm_requests
    FOR EACH ROW EXECUTE FUNCTION llm_requests_touch();

-- A request stands for every answer with its (day, exam, question, normalised text): fanning grades and
-- reviews out to them must find them by that key, not scan the question's answers once per request
-- (quadratic: 20,000 requests to one question took 17 s to fan out without it).
CREATE INDEX answers_request ON answers (institution_id, exam_day, exam_id, question_id, answer_sha256);

-- Batch jobs: the night that wrote them (budget and waves are per night), the wave number, the
-- estimate's output part and the input file's size in bytes, and the batch's usage once collected.
ALTER TABLE batch_jobs
    ADD COLUMN night             date,
    ADD COLUMN wave              integer NOT NULL DEFAULT 1,
    ADD COLUMN est_output_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN input_bytes       bigint NOT NULL DEFAULT 0,
    ADD COLUMN requeued_lines    integer NOT NULL DEFAULT 0;
UPDATE batch_jobs SET night = exam_day WHERE night IS NULL;
ALTER TABLE batch_jobs ALTER COLUMN night SET NOT NULL;
CREATE INDEX batch_jobs_open ON batch_jobs (institution_id, night) WHERE collected_at IS NULL;

-- The token ledger: one row per line per send (job): estimated input and output tokens when written,
-- actual tokens, cost and outcome when collected. Job, attempt, day, night and institution figures are
-- sums over it (view token_ledger_days).
CREATE TABLE batch_lines (
    institution_id    text NOT NULL REFERENCES institutions,
    job_id            bigint NOT NULL REFERENCES batch_jobs,
    custom_id         text NOT NULL REFERENCES llm_requests,
    exam_day          date NOT NULL,
    attempt           integer NOT NULL,
    est_input_tokens  integer NOT NULL,
    est_output_tokens integer NOT NULL,
    input_tokens      integer,
    output_tokens     integer,
    cost_usd          numeric(14, 6),
    outcome           text,   -- graded | review | retry | unrun (never ran: refunded) | missing
    PRIMARY KEY (job_id, custom_id)
);
CREATE INDEX batch_lines_request ON batch_lines (institution_id, custom_id);

CREATE VIEW token_ledger_days WITH (security_invoker = true) AS
SELECT l.institution_id, j.night, l.exam_day, l.attempt,
       count(*) AS lines,
       sum(l.est_input_tokens) AS est_input_tokens, sum(l.est_output_tokens) AS est_output_tokens,
       sum(l.input_tokens) AS input_tokens, sum(l.output_tokens) AS output_tokens,
       sum(l.cost_usd) AS cost_usd,
       count(*) FILTER (WHERE l.input_tokens IS NOT NULL) AS lines_collected
  FROM batch_lines l
  JOIN batch_jobs j ON j.job_id = l.job_id AND j.institution_id = l.institution_id
 GROUP BY l.institution_id, j.night, l.exam_day, l.attempt;

-- The API organisation's enqueued-token cap is shared by every institution: this reservation ledger is
-- organisation-wide ON PURPOSE and has no institution_id column (row-level security by institution
-- would hide the other institutions' reservations and let the sum under-count). It holds no student
-- data: a job id, the tenant that reserved, a token count. Reservations are taken and checked under one
-- advisory lock (gradeflow.grading.reserve), released when the batch is seen finished.
CREATE TABLE openai_enqueued (
    job_id       bigint PRIMARY KEY REFERENCES batch_jobs,
    tenant       text NOT NULL,
    model        text NOT NULL,
    tokens       bigint NOT NULL CHECK (tokens >= 0),
    reserved_at  timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz
);
CREATE INDEX openai_enqueued_live ON openai_enqueued (model) WHERE released_at IS NULL;

-- The worker role may only read tables without institution_id (003_isolation), so it reserves and
-- releases through these two functions, which run with the owner's rights and check that a bound
-- connection only ever reserves or releases for its own institution. One advisory lock serialises
-- every reservation of every institution: two can never both see the same room under the cap.
CREATE FUNCTION gradeflow_reserve_enqueued(p_job bigint, p_tenant text, p_model text, p_tokens bigint,
                                           p_cap bigint, p_share_cap bigint)
RETURNS TABLE (reserved boolean, org_tokens bigint, tenant_tokens bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bound text := nullif(current_setting('gradeflow.institution', true), '');
BEGIN
    IF bound IS NOT NULL AND bound <> p_tenant THEN
        RAISE EXCEPTION 'a connection bound to % cannot reserve enqueued tokens for %', bound, p_tenant;
    END IF;
    PERFORM pg_advisory_xact_lock(1869703523);  -- 0x6f616963, "oaic"
    SELECT coalesce(sum(e.tokens), 0), coalesce(sum(e.tokens) FILTER (WHERE e.tenant = p_tenant), 0)
      INTO org_tokens, tenant_tokens
      FROM openai_enqueued e
     WHERE e.released_at IS NULL AND e.model = p_model AND e.job_id <> p_job;
    -- A job larger than the share on its own (configs change) may go alone if the organisation has room.
    reserved := org_tokens + p_tokens <= p_cap
                AND (tenant_tokens + p_tokens <= p_share_cap OR tenant_tokens = 0);
    IF reserved THEN
        INSERT INTO openai_enqueued (job_id, tenant, model, tokens) VALUES (p_job, p_tenant, p_model, p_tokens)
        ON CONFLICT (job_id) DO UPDATE SET tokens = EXCLUDED.tokens, reserved_at = now(), released_at = NULL;
    END IF;
    RETURN NEXT;
END $$;

CREATE FUNCTION gradeflow_release_enqueued(p_job bigint, p_tenant text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bound text := nullif(current_setting('gradeflow.institution', true), '');
    n integer;
BEGIN
    IF bound IS NOT NULL AND bound <> p_tenant THEN
        RAISE EXCEPTION 'a connection bound to % cannot release enqueued tokens of %', bound, p_tenant;
    END IF;
    UPDATE openai_enqueued SET released_at = now()
     WHERE job_id = p_job AND tenant = p_tenant AND released_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;
