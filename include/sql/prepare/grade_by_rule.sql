-- Grade the day's ungraded objective answers by rule, and its empty free-text answers (0 points), in one
-- statement (reference semantics: tests/rules_reference.py, as SQL functions in migration 007; each question's key is
-- read once, in the materialised q). Only answers with no current grade and no open review are touched,
-- so a rerun grades nothing twice. An answer's grade and review carry its exam day (every writer copies it from
-- the answer, as migration 027's answer_lifecycle relies on), so both checks read the day's rows only, not every
-- current grade and open review the institution has on any day (issue 18: they grew with the history).
WITH q AS MATERIALIZED (
    SELECT institution_id, exam_id, question_id, qtype, max_points, tolerance::float8 AS tolerance,
           CASE WHEN qtype = 'multiple_choice' THEN gradeflow_key_choices(answer_key) END AS key_choices,
           gradeflow_key_bool(answer_key) AS key_bool, gradeflow_key_number(answer_key) AS key_number
      FROM questions
     WHERE institution_id = %(inst)s
)
INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, model,
                    job_id, custom_id, attempt, version, rationale, confidence)
SELECT a.institution_id, a.submission_id, a.question_id, a.exam_day,
       gradeflow_rule_score_keyed(q.qtype, a.answer_text, q.key_choices, q.key_bool, q.key_number, q.tolerance,
                                  q.max_points),
       q.max_points, 'rule', NULL, NULL, NULL, 1, %(version)s,
       CASE WHEN q.qtype = ANY(%(rule_types)s) THEN 'graded by rule' ELSE 'no answer given' END, 1
  FROM answers a
  JOIN q ON q.institution_id = a.institution_id AND q.exam_id = a.exam_id AND q.question_id = a.question_id
 WHERE a.institution_id = %(inst)s AND a.exam_day = %(day)s
   AND (q.qtype = ANY(%(rule_types)s)
        OR (q.qtype = ANY(%(free_text_types)s) AND gradeflow_strip(a.answer_text) = ''))
   AND NOT EXISTS (SELECT 1 FROM grades g WHERE g.institution_id = a.institution_id AND g.exam_day = a.exam_day
                      AND g.submission_id = a.submission_id AND g.question_id = a.question_id AND g.is_current)
   AND NOT EXISTS (SELECT 1 FROM review_queue r WHERE r.institution_id = a.institution_id AND r.exam_day = a.exam_day
                      AND r.submission_id = a.submission_id AND r.question_id = a.question_id AND r.resolved_at IS NULL)
ON CONFLICT (institution_id, submission_id, question_id) WHERE is_current DO NOTHING;
