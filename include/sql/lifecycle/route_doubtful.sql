-- Transition graded -> in_review for model grades that may not be released as they are: a raw score
-- outside [0, max_points] (score_out_of_range: the clamped score stays as the suggestion) or a
-- confidence below the institution's min_confidence (low_confidence) or, for rubric items, a met
-- criterion whose evidence quote is not in the answer (evidence_not_found) or an answer screened as
-- instruction-like (suspected_injection, after evidence_not_found: %(suspected)s maps custom_id -> the signs found). The request keeps the model's
-- score, raw score, rationale and confidence: the reviewer sees them as a suggestion. Only requests
-- none of whose answers took a grade from them yet (newly collected work) are routed; with a job's id,
-- only that job's requests (collect), else every one of the day (prepare). Every request routed is of
-- the day, and its grades, answers and open reviews carry its exam day (their writers copy it): each lookup
-- is bounded to the day, so routing reads the day's rows, not the institution's history.
WITH doubtful AS (
    SELECT r.custom_id,
           CASE WHEN r.raw_score < 0 OR r.raw_score > q.max_points THEN 'score_out_of_range'
                WHEN r.evidence_ok = false THEN 'evidence_not_found'
                WHEN (%(suspected)s::jsonb ->> r.custom_id) IS NOT NULL THEN 'suspected_injection'
                ELSE 'low_confidence' END AS reason,
           CASE WHEN r.raw_score < 0 OR r.raw_score > q.max_points
                THEN format('raw model score %%s outside [0, %%s]; clamped to %%s', r.raw_score, q.max_points, r.score)
                WHEN r.evidence_ok = false
                THEN format('evidence not found in the answer for criteria %%s',
                            (SELECT string_agg(d ->> 'id', ', ') FROM jsonb_array_elements(r.decisions) d
                              WHERE (d ->> 'met')::boolean AND NOT coalesce((d ->> 'evidence_found')::boolean, true)))
                WHEN (%(suspected)s::jsonb ->> r.custom_id) IS NOT NULL
                THEN format('the answer holds instruction-like text (%%s); model score %%s of %%s',
                            %(suspected)s::jsonb ->> r.custom_id, r.score, q.max_points)
                ELSE format('model confidence %%s below min_confidence %%s', r.confidence, %(min_confidence)s::numeric)
           END AS detail
      FROM llm_requests r
      JOIN questions q ON q.institution_id = r.institution_id AND q.exam_id = r.exam_id AND q.question_id = r.question_id
     WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.version = %(version)s AND r.status = 'graded'
       AND (%(job_id)s::bigint IS NULL OR r.job_id = %(job_id)s::bigint)
       AND (r.raw_score < 0 OR r.raw_score > q.max_points OR r.evidence_ok = false
            OR (%(suspected)s::jsonb ->> r.custom_id) IS NOT NULL
            OR coalesce(r.confidence, 0) < %(min_confidence)s)
       AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = r.institution_id AND g.exam_day = r.exam_day
                          AND g.custom_id = r.custom_id)
), req AS (
    UPDATE llm_requests r SET status = 'review', review_reason = d.reason, error = d.detail
      FROM doubtful d
     WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.custom_id = d.custom_id AND r.status = 'graded'
    RETURNING r.custom_id, r.exam_day, r.exam_id, r.question_id, r.answer_sha256, d.reason, d.detail
)
INSERT INTO review_queue (institution_id, submission_id, question_id, exam_day, reason, detail, custom_id)
SELECT %(inst)s, a.submission_id, a.question_id, a.exam_day, req.reason, req.detail, req.custom_id
  FROM req
  JOIN answers a ON a.institution_id = %(inst)s AND a.exam_day = %(day)s AND a.exam_day = req.exam_day
                AND a.exam_id = req.exam_id AND a.question_id = req.question_id AND a.answer_sha256 = req.answer_sha256
 WHERE NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = %(inst)s AND g.exam_day = a.exam_day
                      AND g.submission_id = a.submission_id
                      AND g.question_id = a.question_id AND g.is_current)
ON CONFLICT (institution_id, submission_id, question_id) WHERE resolved_at IS NULL DO NOTHING
RETURNING reason;
