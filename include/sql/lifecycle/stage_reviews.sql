-- A reviewers' file's validated rows, one round at a time (each review item at most once per round), in
-- the file's transaction: the set the human-review transition below works on.
CREATE TEMP TABLE IF NOT EXISTS stage_reviews (
    source_row      integer PRIMARY KEY,
    review_id       text NOT NULL UNIQUE,
    score           numeric NOT NULL,
    reviewer        text NOT NULL,
    comment         text,
    exam_day        date NOT NULL,
    review_line_id  bigint,
    decisions       jsonb          -- the reviewer's ticked rubric items, if any
) ON COMMIT DROP;
