-- A reviewer's new score supersedes the current grade of these answers (kept, is_current = false).
UPDATE grades g SET is_current = false
  FROM unnest(%(submission_ids)s::text[], %(question_ids)s::text[]) AS t(submission_id, question_id)
 WHERE g.institution_id = %(inst)s AND g.submission_id = t.submission_id AND g.question_id = t.question_id
   AND g.is_current;
