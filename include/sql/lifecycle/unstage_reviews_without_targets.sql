-- Staged reviews of which no answer waits (their answers were regraded since): refused by the caller.
DELETE FROM stage_reviews s
 WHERE NOT EXISTS (SELECT 1 FROM stage_review_targets t WHERE t.source_row = s.source_row)
RETURNING s.source_row, s.review_id;
