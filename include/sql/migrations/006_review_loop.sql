-- The grading loop closed (docs/review-round-trip.md, docs/releases.md):
--   * review items: one per distinct piece of work in review (a model request = identical answers merged),
--     with an opaque, random review_id reviewers see instead of any student or submission identity;
--   * reviews: every reviewer's score received, kept (a second review of an item is a new grade version);
--   * human grades carry the reviewer and the review item;
--   * releases become visible only once their exports are written (exported_at), and record agreement;
--   * released rows say who graded, with which model, confidence, rationale and grading version.

CREATE TABLE review_items (
    review_id        text PRIMARY KEY DEFAULT 'rv-' || replace(gen_random_uuid()::text, '-', ''),
    institution_id   text NOT NULL REFERENCES institutions,
    exam_day         date NOT NULL,
    exam_id          text NOT NULL,
    question_id      text NOT NULL,
    work_key         text NOT NULL,      -- the model request's custom_id, or 'queue:<review_queue id>' for a lone answer
    custom_id        text,
    reason           text NOT NULL REFERENCES review_reasons,
    -- open: waits for a reviewer; reviewed: graded by a human (a second review is a new grade version);
    -- closed: withdrawn without a review (an admin rerun regraded its answers): reviews of it are refused.
    status           text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'reviewed', 'closed')),
    reviews          integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    closed_at        timestamptz,
    UNIQUE (institution_id, work_key)
);
CREATE INDEX review_items_day ON review_items (institution_id, exam_day, status);

ALTER TABLE review_queue ADD COLUMN review_item text REFERENCES review_items;
CREATE INDEX review_queue_item ON review_queue (institution_id, review_item) WHERE resolved_at IS NULL;
CREATE INDEX review_queue_custom_id ON review_queue (institution_id, custom_id) WHERE resolved_at IS NULL;

CREATE TABLE reviews (
    review_line_id   bigserial PRIMARY KEY,
    institution_id   text NOT NULL REFERENCES institutions,
    exam_day         date NOT NULL,
    review_id        text NOT NULL REFERENCES review_items,
    score            numeric NOT NULL CHECK (score >= 0),
    reviewer         text NOT NULL,
    comment          text,
    file_id          bigint REFERENCES ingested_files,
    source_row       integer,
    answers_graded   integer NOT NULL DEFAULT 0,
    received_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    announced_at     timestamptz          -- when an Asset event told the publish DAG about it
);
CREATE INDEX reviews_item ON reviews (institution_id, review_id, review_line_id);
CREATE INDEX reviews_unannounced ON reviews (institution_id) WHERE announced_at IS NULL;

ALTER TABLE grades
    ADD COLUMN reviewer  text,
    ADD COLUMN review_id text REFERENCES review_items,
    ADD COLUMN review_line_id bigint REFERENCES reviews;
CREATE INDEX grades_custom_id ON grades (institution_id, custom_id) WHERE custom_id IS NOT NULL;

-- Model requests a human graded: identical answers arriving later take the same human grade.
ALTER TABLE llm_requests DROP CONSTRAINT llm_requests_status_check;
ALTER TABLE llm_requests ADD CONSTRAINT llm_requests_status_check
    CHECK (status IN ('pending', 'queued', 'graded', 'review', 'reviewed', 'deferred', 'superseded'));

ALTER TABLE ingested_files DROP CONSTRAINT ingested_files_kind_check;
ALTER TABLE ingested_files ADD CONSTRAINT ingested_files_kind_check
    CHECK (kind IN ('exam', 'submissions', 'reviews', 'unknown'));

-- A release is visible (view published_releases) only once its exports are in place.
ALTER TABLE releases
    ADD COLUMN exported_at      timestamptz,
    ADD COLUMN submissions_key  text,
    ADD COLUMN agreement_key    text,
    ADD COLUMN agreement        jsonb;
UPDATE releases SET exported_at = released_at WHERE export_key IS NOT NULL;

ALTER TABLE release_results
    ADD COLUMN question_type   text,
    ADD COLUMN model           text,
    ADD COLUMN confidence      numeric,
    ADD COLUMN rationale       text,
    ADD COLUMN grading_version integer,
    ADD COLUMN suggested_score numeric;   -- the model's score where a human graded (agreement)

CREATE VIEW published_releases WITH (security_invoker = true) AS
SELECT * FROM releases WHERE exported_at IS NOT NULL;

CREATE VIEW published_results WITH (security_invoker = true) AS
SELECT r.* FROM release_results r
  JOIN releases x ON x.release_id = r.release_id AND x.institution_id = r.institution_id
 WHERE x.exported_at IS NOT NULL;
