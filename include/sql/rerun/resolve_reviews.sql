UPDATE review_queue v SET resolved_at = now(), detail = coalesce(detail, '') || ' [superseded by rerun]'
  FROM rerun_scope r
 WHERE v.institution_id = r.institution_id AND v.submission_id = r.submission_id
   AND v.question_id = r.question_id AND v.resolved_at IS NULL;
