-- The released rows: every answer of the day in exactly one state (answer_lifecycle), graded or pending
-- with the reason it waits (in review with its review reason, deferred, pending the model, received).
-- Graded rows say who graded (rule, llm, human), with which model, confidence and rationale (the model's,
-- or the reviewer's comment) and at which grading version; a human grade keeps the model's suggestion. A
-- rubric-item grade carries its decisions (the model's with evidence, or the criteria a reviewer ticked).
-- origin: rule; model (released without a human); audit (a model grade released while the audit sample holds
-- it: its suggested_score is the model's score; or the human score of an audit item); routed (the human score of
-- work routed to review). Pending rows have none.
-- Copied from the rows the release staged and fingerprinted (publish/stage_release_rows), not from a second
-- evaluation of answer_lifecycle.
INSERT INTO release_results (release_id, institution_id, exam_day, version, exam_id, submission_id, student_id,
                             question_id, status, score, max_points, grader, pending_reason, review_reason,
                             question_type, model, confidence, rationale, grading_version, suggested_score,
                             criteria, origin)
SELECT %(release_id)s, t.institution, %(day)s, %(version)s, t.exam_id, t.submission_id, s.student_id,
       t.question_id, CASE WHEN t.state = 'graded' THEN 'graded' ELSE 'pending' END,
       t.released_score, t.released_max_points, t.grader, t.pending_reason, t.review_reason,
       t.question_type, g.model, g.confidence, g.rationale, coalesce(g.version, %(grading_version)s),
       CASE WHEN g.grader = 'human' THEN lr.score WHEN g.grader = 'llm' AND ai.review_id IS NOT NULL THEN g.score END,
       g.decisions,
       CASE WHEN t.state <> 'graded' THEN NULL
            WHEN g.grader = 'rule' THEN 'rule'
            WHEN g.grader = 'llm' THEN CASE WHEN ai.review_id IS NOT NULL THEN 'audit' ELSE 'model' END
            WHEN hi.origin = 'audit' THEN 'audit'
            ELSE 'routed' END
  FROM release_rows t
  JOIN submissions s ON s.institution_id = %(inst)s AND s.submission_id = t.submission_id
  LEFT JOIN grades g ON g.grade_id = t.grade_id
  LEFT JOIN llm_requests lr ON g.grader = 'human' AND lr.institution_id = g.institution_id
                           AND lr.custom_id = g.custom_id
  LEFT JOIN review_items ai ON g.grader = 'llm' AND ai.institution_id = g.institution_id AND ai.work_key = g.custom_id
                           AND ai.origin = 'audit' AND ai.status <> 'closed'
  LEFT JOIN review_items hi ON g.grader = 'human' AND hi.institution_id = g.institution_id
                           AND hi.review_id = g.review_id
 WHERE t.institution = %(inst)s;
