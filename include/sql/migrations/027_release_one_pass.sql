-- Perf (issue 18): a release is written in one pass, and nothing of the publish path reads another day.
--
-- 1. release_results.row_hash: each released row's hash in the day's state fingerprint (publish/row_hash over
--    the row's publish/answer_rows columns). The release evaluates the day's outcome rows once and writes them
--    straight into release_results (publish/insert_release_results), returning these hashes: their count and
--    sum are the fingerprint of exactly the rows written, compared with the one the gate validated before the
--    transaction commits. No staging table, no second pass over the rows. It also lets anyone check a release
--    against its own fingerprint: releases.fingerprint = 'v2:' || count(*) || ':' || sum(row_hash) over its
--    rows. NULL in the rows of releases written before this migration.
-- 2. answer_lifecycle joins an answer's current grade and open review on the answer's own exam day. Every
--    writer of grades and review_queue copies exam_day from the answer (prepare/grade_by_rule,
--    lifecycle/apply_model_grades, apply_review_grades, insert_staged_human_grades, route_doubtful,
--    fan_out_reviews, to_review), so the rows joined are the same; but the planner now reads the day's grades
--    and reviews only (it derives grades.exam_day = the day from the caller's filter), where it read every
--    current grade of the institution, all days: the gate, the release and the day's counts slowed as the
--    institution's history grew. Same columns, same meaning.
ALTER TABLE release_results ADD COLUMN row_hash bigint;

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
            ELSE 'received' END AS pending_reason
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
