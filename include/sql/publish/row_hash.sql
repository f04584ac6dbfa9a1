-- One row's hash for the state fingerprint: every column of publish/answer_rows (alias a), each hashed with
-- its own seed (a NULL as the seed itself) and combined with XOR; cheap (no text conversion of the row).
(coalesce(hashtextextended(a.submission_id, 1), 1) # coalesce(hashtextextended(a.question_id, 2), 2)
   # coalesce(hashfloat8extended(a.max_points, 3), 3) # coalesce(hashint4extended(a.grade_count, 4), 4)
   # coalesce(hashint4extended(a.in_review::int, 5), 5) # coalesce(hashint4extended(a.waiting::int, 6), 6)
   # coalesce(hashtextextended(a.state, 7), 7) # coalesce(hashtextextended(a.pending_reason, 8), 8)
   # coalesce(hashtextextended(a.review_reason, 9), 9) # coalesce(hashfloat8extended(a.score, 10), 10)
   # coalesce(hashtextextended(a.grader, 11), 11) # coalesce(hashint8extended(a.grade_id, 12), 12))
