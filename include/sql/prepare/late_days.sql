-- Earlier exam days with submissions that arrived after their day's cut-off (not numbered FIFO yet):
-- tonight grades them, and those days get a new release version.
SELECT exam_day, count(*) AS submissions
  FROM submissions
 WHERE institution_id = %(inst)s AND exam_day < %(day)s AND fifo_seq IS NULL
 GROUP BY exam_day
 ORDER BY exam_day;
