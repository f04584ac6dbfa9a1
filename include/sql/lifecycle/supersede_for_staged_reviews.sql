-- A reviewer's new score supersedes the current grade of the answers it applies to (kept, is_current = false).
UPDATE grades g SET is_current = false
  FROM stage_review_targets t
 WHERE g.institution_id = %(inst)s AND g.submission_id = t.submission_id AND g.question_id = t.question_id
   AND g.is_current;
