-- The targets of the previous round (a file naming an item twice applies its reviews in rounds).
DROP TABLE IF EXISTS stage_review_targets;
