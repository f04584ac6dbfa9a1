-- Staged rows that give a submission loaded before (stage_owners.loaded), with its owner's student and exam, the very
-- answer an earlier load holds for the question (the same hash): duplicates (counted as staged, not loaded), dropped
-- before the clashes are ranked, so a file sent again (read again for its waiting rows) does not rank, look up and
-- probe again every row it loaded before. What clashing_rows.sql finds is the same without them: for a question an
-- earlier load answered, a row stands or falls by the loaded answer, never by the file's first row; such a row
-- clashes with nothing, and a later copy of it in the file is a twin (dropped too). A row naming another student
-- or exam than the owner stays (an owner clash, refused with its reason).
DELETE FROM stage_answers s
 USING stage_owners o, answers a
 WHERE o.loaded AND o.submission_id = s.submission_id AND o.student_id = s.student_id AND o.exam_id = s.exam_id
   AND a.institution_id = %(inst)s AND a.submission_id = s.submission_id AND a.question_id = s.question_id
   AND a.answer_sha256 = s.answer_sha256;
