-- Transition queued -> graded (llm): fan each graded model request out to every answer it stands for.
-- job_id NULL: every graded request of the day (prepare: answers identical to work graded earlier);
-- a job's id: only that job's requests (collect: a job's work costs the job's size, not the day's).
-- An answer that already has a current grade keeps it: the ON CONFLICT arbiter (grades_one_current) skips it, in
-- the same index probe the insert makes anyway (a NOT EXISTS over the current grades was the same check twice).
-- An answer in open review waits for its reviewer; the open review is looked up on the answer's own exam day
-- (every writer of review_queue copies it from the answer, as migration 027's answer_lifecycle relies on), so the
-- statement reads the day's rows, not the institution's history.
INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, model,
                    job_id, custom_id, attempt, version, rationale, confidence, decisions)
SELECT r.institution_id, a.submission_id, a.question_id, a.exam_day,
       least(greatest(r.score, 0), q.max_points), q.max_points, 'llm', j.model,
       r.job_id, r.custom_id, r.attempt, %(version)s, r.rationale, r.confidence, r.decisions
  FROM llm_requests r
  JOIN answers a ON a.institution_id = r.institution_id AND a.exam_day = r.exam_day AND a.exam_id = r.exam_id
                AND a.question_id = r.question_id AND a.answer_sha256 = r.answer_sha256
  JOIN questions q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
  LEFT JOIN batch_jobs j ON j.job_id = r.job_id AND j.institution_id = r.institution_id
 WHERE r.institution_id = %(inst)s AND r.exam_day = %(day)s AND r.status = 'graded' AND r.version = %(version)s
   AND (%(job_id)s::bigint IS NULL OR r.job_id = %(job_id)s::bigint)
   AND NOT EXISTS (SELECT 1 FROM review_queue v WHERE v.institution_id = a.institution_id AND v.exam_day = a.exam_day
                      AND v.submission_id = a.submission_id AND v.question_id = a.question_id AND v.resolved_at IS NULL)
ON CONFLICT (institution_id, submission_id, question_id) WHERE is_current DO NOTHING;
