-- The audit sample (issue 14): every night a random, per-question stratified sample of the model grades
-- released without a human goes blind into the review packet (docs/review-round-trip.md, "The audit sample").
-- An audit item is a review item like any other for the reviewer; its grades stay released (an audit, not a
-- hold: no review_queue row, the answers stay graded (llm)) and the reviewer's score supersedes them in the next
-- version. origin says why an item exists: 'routed' (work waits in review for a reason) or 'audit' (drawn at
-- random; no reason). A routed item has its reason, an audit item none.
ALTER TABLE review_items
    ADD COLUMN origin text NOT NULL DEFAULT 'routed' CHECK (origin IN ('routed', 'audit')),
    ALTER COLUMN reason DROP NOT NULL,
    ADD CONSTRAINT review_items_reason_by_origin CHECK ((origin = 'audit') = (reason IS NULL));
CREATE INDEX review_items_audit ON review_items (institution_id, exam_day, question_id) WHERE origin = 'audit';

-- Where a released grade came from: rule, model (released unreviewed), audit (a model grade released while it is
-- audited, or the human score of an audit), routed (the human score of work routed to review). NULL: pending.
ALTER TABLE release_results ADD COLUMN origin text CHECK (origin IN ('rule', 'model', 'audit', 'routed'));
