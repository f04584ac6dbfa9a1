-- Empty the stage for the next round (the table lives until the file's transaction ends).
TRUNCATE stage_reviews;
