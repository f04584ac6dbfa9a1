-- A reviewer's score applies to the answers whose current grade came from its item (a second review is a
-- new grade version): found through this small index (human grades only) instead of a scan of grades.
CREATE INDEX grades_review_id ON grades (institution_id, review_id) WHERE review_id IS NOT NULL;
