-- Every open review_queue row points at its item.
UPDATE review_queue v SET review_item = i.review_id
  FROM review_items i
 WHERE v.institution_id = %(inst)s AND v.exam_day = %(day)s AND v.resolved_at IS NULL AND v.review_item IS NULL
   AND i.institution_id = v.institution_id AND i.work_key = coalesce(v.custom_id, 'queue:' || v.review_id);
