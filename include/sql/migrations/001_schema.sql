-- GradeFlow schema, version 1. Every table carries institution_id: one institution's rows are
-- never read without it (isolation). Applied by gradeflow.db.migrate(), once, under an advisory lock.

CREATE TABLE institutions (
    institution_id  text PRIMARY KEY,
    name            text NOT NULL,
    timezone        text NOT NULL,
    s3_prefix       text NOT NULL UNIQUE,
    model           text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ingested_files (
    file_id         bigserial PRIMARY KEY,
    institution_id  text NOT NULL REFERENCES institutions,
    exam_day        date NOT NULL,
    s3_key          text NOT NULL,
    file_name       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('exam', 'submissions', 'unknown')),
    sha256          text NOT NULL,
    size_bytes      bigint NOT NULL,
    last_modified   timestamptz,
    status          text NOT NULL CHECK (status IN ('loaded', 'rejected', 'duplicate')),
    duplicate_of    bigint REFERENCES ingested_files,
    rows_total      integer NOT NULL DEFAULT 0,
    rows_loaded     integer NOT NULL DEFAULT 0,
    rows_rejected   integer NOT NULL DEFAULT 0,
    rows_duplicate  integer NOT NULL DEFAULT 0,
    archived_key    text,
    rejects_key     text,
    ingested_at     timestamptz NOT NULL DEFAULT now()
);
-- A file's bytes load cleanly once per institution, whatever its name (a file with rejects may be re-sent).
CREATE UNIQUE INDEX ingested_files_once ON ingested_files (institution_id, sha256)
    WHERE status = 'loaded' AND rows_rejected = 0;

CREATE TABLE exams (
    institution_id    text NOT NULL REFERENCES institutions,
    exam_id           text NOT NULL,
    exam_day          date NOT NULL,
    title             text NOT NULL,
    definition_sha256 text NOT NULL,
    source_file_id    bigint REFERENCES ingested_files,
    loaded_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (institution_id, exam_id)
);

CREATE TABLE questions (
    institution_id   text NOT NULL,
    exam_id          text NOT NULL,
    question_id      text NOT NULL,
    position         integer NOT NULL,
    qtype            text NOT NULL CHECK (qtype IN ('multiple_choice', 'true_false', 'numeric', 'short_answer', 'essay')),
    max_points       numeric NOT NULL CHECK (max_points > 0),
    prompt           text NOT NULL DEFAULT '',
    options          jsonb,
    answer_key       jsonb,
    tolerance        numeric NOT NULL DEFAULT 0 CHECK (tolerance >= 0),
    rubric           text,
    reference_answer text,
    PRIMARY KEY (institution_id, exam_id, question_id),
    FOREIGN KEY (institution_id, exam_id) REFERENCES exams
);

CREATE TABLE submissions (
    institution_id  text NOT NULL REFERENCES institutions,
    submission_id   text NOT NULL,
    exam_id         text NOT NULL,
    student_id      text NOT NULL,
    exam_day        date NOT NULL,
    submitted_at    timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    source_file_id  bigint NOT NULL REFERENCES ingested_files,
    fifo_seq        bigint,
    PRIMARY KEY (institution_id, submission_id),
    FOREIGN KEY (institution_id, exam_id) REFERENCES exams
);
CREATE INDEX submissions_day ON submissions (institution_id, exam_day, fifo_seq);

CREATE TABLE answers (
    institution_id  text NOT NULL,
    submission_id   text NOT NULL,
    question_id     text NOT NULL,
    exam_id         text NOT NULL,
    exam_day        date NOT NULL,
    answer_text     text NOT NULL DEFAULT '',
    answer_sha256   text NOT NULL,   -- of the normalised text: identical answers merge on it
    source_file_id  bigint NOT NULL REFERENCES ingested_files,
    source_row      integer NOT NULL,
    PRIMARY KEY (institution_id, submission_id, question_id),
    FOREIGN KEY (institution_id, submission_id) REFERENCES submissions,
    FOREIGN KEY (institution_id, exam_id, question_id) REFERENCES questions
);
CREATE INDEX answers_day ON answers (institution_id, exam_day, question_id);

CREATE TABLE rejected_rows (
    reject_id       bigserial PRIMARY KEY,
    institution_id  text NOT NULL REFERENCES institutions,
    exam_day        date NOT NULL,
    file_id         bigint REFERENCES ingested_files,
    file_name       text NOT NULL,
    row_number      integer,          -- 1-based data row; NULL when the whole file is rejected
    field           text,
    value           text,
    reason          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_rows_day ON rejected_rows (institution_id, exam_day);

-- One row per Batch API job: the deterministic fingerprint is its identity across retries.
CREATE TABLE batch_jobs (
    job_id            bigserial PRIMARY KEY,
    institution_id    text NOT NULL REFERENCES institutions,
    exam_day          date NOT NULL,
    fingerprint       text NOT NULL UNIQUE,
    attempt           integer NOT NULL DEFAULT 1,
    model             text NOT NULL,
    input_key         text NOT NULL,
    request_count     integer NOT NULL,
    est_input_tokens  bigint NOT NULL,
    status            text NOT NULL DEFAULT 'prepared',
    openai_file_id    text,
    openai_batch_id   text UNIQUE,
    output_file_id    text,
    error_file_id     text,
    request_counts    jsonb,
    errors            jsonb,
    input_tokens      bigint,
    output_tokens     bigint,
    cost_usd          numeric(14, 6),
    created_at        timestamptz NOT NULL DEFAULT now(),
    submitted_at      timestamptz,
    finished_at       timestamptz,
    collected_at      timestamptz
);
CREATE INDEX batch_jobs_day ON batch_jobs (institution_id, exam_day, status);

-- One model request per distinct (question, normalised answer): identical answers are merged.
CREATE TABLE llm_requests (
    custom_id        text PRIMARY KEY,   -- opaque, deterministic; no student identity
    institution_id   text NOT NULL REFERENCES institutions,
    exam_day         date NOT NULL,
    exam_id          text NOT NULL,
    question_id      text NOT NULL,
    answer_sha256    text NOT NULL,
    version          integer NOT NULL DEFAULT 1,  -- grading version: an admin regrade is new work
    first_fifo_seq   bigint NOT NULL,
    answer_count     integer NOT NULL,
    est_tokens       integer NOT NULL,
    job_id           bigint REFERENCES batch_jobs,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'queued', 'graded', 'review', 'over_budget', 'superseded')),
    attempt          integer NOT NULL DEFAULT 0,
    score            numeric,
    raw_score        numeric,
    rationale        text,
    confidence       numeric,
    input_tokens     integer,
    output_tokens    integer,
    cost_usd         numeric(14, 6),
    error            text,
    UNIQUE (institution_id, exam_day, exam_id, question_id, answer_sha256, version)
);
CREATE INDEX llm_requests_job ON llm_requests (job_id);

CREATE TABLE grades (
    grade_id        bigserial PRIMARY KEY,
    institution_id  text NOT NULL,
    submission_id   text NOT NULL,
    question_id     text NOT NULL,
    exam_day        date NOT NULL,
    score           numeric NOT NULL,
    max_points      numeric NOT NULL,
    grader          text NOT NULL CHECK (grader IN ('rule', 'llm', 'human')),
    model           text,
    job_id          bigint REFERENCES batch_jobs,
    custom_id       text,
    attempt         integer NOT NULL DEFAULT 1,
    version         integer NOT NULL DEFAULT 1,
    rationale       text,
    confidence      numeric,
    is_current      boolean NOT NULL DEFAULT true,
    graded_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (score >= 0 AND score <= max_points),
    FOREIGN KEY (institution_id, submission_id, question_id) REFERENCES answers
);
CREATE UNIQUE INDEX grades_one_current ON grades (institution_id, submission_id, question_id) WHERE is_current;
CREATE INDEX grades_day ON grades (institution_id, exam_day) WHERE is_current;

CREATE TABLE review_queue (
    review_id       bigserial PRIMARY KEY,
    institution_id  text NOT NULL,
    submission_id   text NOT NULL,
    question_id     text NOT NULL,
    exam_day        date NOT NULL,
    reason          text NOT NULL,
    detail          text,
    custom_id       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    FOREIGN KEY (institution_id, submission_id, question_id) REFERENCES answers
);
CREATE UNIQUE INDEX review_queue_open ON review_queue (institution_id, submission_id, question_id) WHERE resolved_at IS NULL;

CREATE TABLE validation_runs (
    validation_id   bigserial PRIMARY KEY,
    institution_id  text NOT NULL REFERENCES institutions,
    exam_day        date NOT NULL,
    success         boolean NOT NULL,
    results         jsonb NOT NULL,
    fingerprint     text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE releases (
    release_id      bigserial PRIMARY KEY,
    institution_id  text NOT NULL REFERENCES institutions,
    exam_day        date NOT NULL,
    version         integer NOT NULL,
    fingerprint     text NOT NULL,
    validation_id   bigint NOT NULL REFERENCES validation_runs,
    row_count       integer NOT NULL,
    export_key      text,
    released_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (institution_id, exam_day, version)
);

CREATE TABLE release_results (
    release_id      bigint NOT NULL REFERENCES releases,
    institution_id  text NOT NULL,
    exam_day        date NOT NULL,
    version         integer NOT NULL,
    exam_id         text NOT NULL,
    submission_id   text NOT NULL,
    student_id      text NOT NULL,
    question_id     text NOT NULL,
    status          text NOT NULL CHECK (status IN ('graded', 'pending_review')),
    score           numeric,
    max_points      numeric NOT NULL,
    grader          text,
    PRIMARY KEY (release_id, submission_id, question_id)
);
CREATE INDEX release_results_inst ON release_results (institution_id, exam_day, version);

CREATE TABLE audit_log (
    audit_id        bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor           text NOT NULL,
    action          text NOT NULL,
    institution_id  text,
    exam_day        date,
    details         jsonb NOT NULL DEFAULT '{}'
);
