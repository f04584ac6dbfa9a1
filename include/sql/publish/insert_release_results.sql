-- The released rows: every answer of the day in exactly one state (answer_lifecycle), graded or pending
-- with the reason it waits (in review with its review reason, deferred, pending the model, received).
-- Graded rows say who graded (rule, llm, human), with which model, confidence and rationale (the model's,
-- or the reviewer's comment) and at which grading version; a human grade keeps the model's suggestion. A
-- rubric-item grade carries its decisions (the model's with evidence, or the criteria a reviewer ticked).
-- origin: rule; model (released without a human); audit (a model grade released while the audit sample holds
-- it: its suggested_score is the model's score; or the human score of an audit item); routed (the human score of
-- work routed to review). Pending rows have none.
-- One pass (issue 18): the day's outcome rows (publish/release_source: publish/answer_rows' rows, the rows the
-- gate validates, with the current grade's columns from the same join) are evaluated once and written here with
-- each row's hash (publish/row_hash); the statement returns the count and the sum of the hashes of exactly the
-- rows written: their state fingerprint, which the release compares with the gate's before it commits
-- (publish.release). No staging table, no second evaluation, and the day's grades are read once (030).
-- Every table is read for the institution and the day only (an answer's submission, grade, request and review
-- items are of the answer's day), never the institution's other days.
-- The placeholders take the text of publish/release_source and publish/row_hash.
WITH written AS (
    INSERT INTO release_results (release_id, institution_id, exam_day, version, exam_id, submission_id, student_id,
                                 question_id, status, score, max_points, grader, pending_reason, review_reason,
                                 question_type, model, confidence, rationale, grading_version, suggested_score,
                                 criteria, origin, row_hash)
    SELECT %(release_id)s, a.institution, %(day)s, %(version)s, a.exam_id, a.submission_id, s.student_id,
           a.question_id, CASE WHEN a.state = 'graded' THEN 'graded' ELSE 'pending' END,
           a.released_score, a.released_max_points, a.grader, a.pending_reason, a.review_reason,
           a.question_type, a.grade_model, a.grade_confidence, a.grade_rationale,
           coalesce(a.grade_version, %(grading_version)s),
           CASE WHEN a.grader = 'human' THEN lr.score
                WHEN a.grader = 'llm' AND ai.review_id IS NOT NULL THEN a.released_score END,
           a.grade_decisions,
           CASE WHEN a.state <> 'graded' THEN NULL
                WHEN a.grader = 'rule' THEN 'rule'
                WHEN a.grader = 'llm' THEN CASE WHEN ai.review_id IS NOT NULL THEN 'audit' ELSE 'model' END
                WHEN hi.origin = 'audit' THEN 'audit'
                ELSE 'routed' END,
           {row_hash}
      FROM ({release_source}) a
      JOIN submissions s ON s.institution_id = %(inst)s AND s.exam_day = %(day)s AND s.submission_id = a.submission_id
      LEFT JOIN llm_requests lr ON a.grader = 'human' AND lr.institution_id = %(inst)s AND lr.exam_day = %(day)s
                               AND lr.custom_id = a.grade_custom_id
      LEFT JOIN review_items ai ON a.grader = 'llm' AND ai.institution_id = %(inst)s AND ai.exam_day = %(day)s
                               AND ai.work_key = a.grade_custom_id AND ai.origin = 'audit' AND ai.status <> 'closed'
      LEFT JOIN review_items hi ON a.grader = 'human' AND hi.institution_id = %(inst)s AND hi.exam_day = %(day)s
                               AND hi.review_id = a.grade_review_id
    RETURNING row_hash
)
SELECT count(*)::int AS row_count, 'v2:' || count(*) || ':' || coalesce(sum(row_hash), 0) AS fingerprint
  FROM written;
