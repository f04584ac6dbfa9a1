-- Every staged review is kept as received (its line id goes back to the stage for the grades).
WITH received AS (
    INSERT INTO reviews (institution_id, exam_day, review_id, score, reviewer, comment, file_id, source_row,
                         decisions)
    SELECT %(inst)s, s.exam_day, s.review_id, s.score, s.reviewer, s.comment, %(file_id)s, s.source_row,
           s.decisions
      FROM stage_reviews s
     ORDER BY s.source_row
    RETURNING review_line_id, source_row
)
UPDATE stage_reviews s SET review_line_id = r.review_line_id FROM received r WHERE r.source_row = s.source_row;
