-- Perf (issue 18): the release reads the day's grades once.
--
-- answer_lifecycle gains, after its columns (same columns, same order, same meaning), the columns of the
-- answer's current grade that the release copies besides its state: model, confidence, rationale, version,
-- decisions, custom id and review id. The release (publish/insert_release_results over publish/release_source)
-- took them from a second read of the day's grades by grade_id, and recounted every answer's current grades and
-- open reviews in two more passes (publish/answer_rows' independent counts, which the gate keeps); it now takes
-- them from the view's one join. A view's unread columns cost nothing: the planner drops them for every other
-- reader. Still bounded to the answer's own exam day (027).
CREATE OR REPLACE VIEW answer_lifecycle WITH (security_invoker = true) AS
SELECT a.institution_id, a.exam_day, a.exam_id, a.submission_id, a.question_id, a.answer_sha256,
       g.grade_id, g.grader, g.score, g.max_points AS graded_max_points,
       v.review_id, v.reason AS review_reason,
       r.custom_id, r.status AS request_status, r.deferred_reason,
       CASE WHEN g.grade_id IS NOT NULL THEN 'graded'
            WHEN v.review_id IS NOT NULL THEN 'in_review'
            WHEN r.status = 'deferred' THEN 'deferred'
            WHEN r.status IN ('pending', 'queued') THEN 'queued'
            ELSE 'received' END AS state,
       CASE WHEN g.grade_id IS NOT NULL THEN NULL
            WHEN v.review_id IS NOT NULL THEN 'in_review'
            WHEN r.status = 'deferred' THEN r.deferred_reason
            WHEN r.status IN ('pending', 'queued') THEN 'pending_model'
            ELSE 'received' END AS pending_reason,
       g.model AS grade_model, g.confidence AS grade_confidence, g.rationale AS grade_rationale,
       g.version AS grade_version, g.decisions AS grade_decisions, g.custom_id AS grade_custom_id,
       g.review_id AS grade_review_id
  FROM answers a
  LEFT JOIN grades g ON g.institution_id = a.institution_id AND g.exam_day = a.exam_day
                    AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current
  LEFT JOIN review_queue v ON v.institution_id = a.institution_id AND v.exam_day = a.exam_day
                          AND v.submission_id = a.submission_id AND v.question_id = a.question_id
                          AND v.resolved_at IS NULL
  LEFT JOIN (
        SELECT DISTINCT ON (lr.institution_id, lr.exam_day, lr.exam_id, lr.question_id, lr.answer_sha256)
               lr.institution_id, lr.exam_day, lr.exam_id, lr.question_id, lr.answer_sha256,
               lr.custom_id, lr.status, lr.deferred_reason
          FROM llm_requests lr
         WHERE lr.status IN ('pending', 'queued', 'deferred')
         ORDER BY lr.institution_id, lr.exam_day, lr.exam_id, lr.question_id, lr.answer_sha256, lr.version DESC
       ) r ON r.institution_id = a.institution_id AND r.exam_day = a.exam_day AND r.exam_id = a.exam_id
          AND r.question_id = a.question_id AND r.answer_sha256 = a.answer_sha256;
