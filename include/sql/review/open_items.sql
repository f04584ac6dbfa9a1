-- The open review items of a day, one row per distinct piece of work, blind: the question, the answer
-- text (the first in arrival order of the merged answers), the model's suggestion if any (with its rubric-item
-- decisions and evidence quotes). No student, submission or custom id leaves in it. Routed and audit items
-- come the same way (origin and reason are returned for the operators' log; the packet leaves them out, and
-- the confidence, which would tell a low_confidence item from an audited one): a routed item's answers are
-- those waiting in review for it, an audit item's those whose current grade is its request's model grade.
-- Ordered by question, then by the random review_id: an item's place says nothing of why it is there.
SELECT i.review_id, i.exam_day::text AS exam_day, i.exam_id, i.question_id, q.qtype AS question_type,
       q.prompt AS question_text, q.rubric, q.reference_answer, q.max_points::float8 AS max_points,
       w.answer_text, w.answers::int AS answers, i.reason, i.origin,
       r.score::float8 AS suggested_score, r.raw_score::float8 AS model_raw_score,
       r.rationale AS suggested_rationale, r.confidence::float8 AS suggested_confidence,
       CASE WHEN q.rubric_items IS NOT NULL THEN q.rubric_items::text END AS rubric_items,
       (SELECT jsonb_agg(jsonb_build_object('id', d ->> 'id', 'met', (d ->> 'met')::boolean,
                                            'evidence', d ->> 'evidence'))
          FROM jsonb_array_elements(r.decisions) d)::text AS suggested_criteria,
       i.reviews::int AS earlier_reviews
  FROM review_items i
  JOIN questions q ON q.institution_id = i.institution_id AND q.exam_id = i.exam_id AND q.question_id = i.question_id
  JOIN LATERAL (
        SELECT (array_agg(a.answer_text ORDER BY s.fifo_seq NULLS LAST, s.received_at))[1] AS answer_text,
               count(*) AS answers
          FROM (SELECT v.submission_id, v.question_id
                  FROM review_queue v
                 WHERE i.origin = 'routed' AND v.institution_id = i.institution_id AND v.review_item = i.review_id
                   AND v.resolved_at IS NULL
                UNION ALL
                SELECT g.submission_id, g.question_id
                  FROM grades g
                 WHERE i.origin = 'audit' AND g.institution_id = i.institution_id AND g.custom_id = i.custom_id
                   AND g.is_current AND g.grader = 'llm') v
          JOIN answers a ON a.institution_id = %(inst)s AND a.submission_id = v.submission_id
                        AND a.question_id = v.question_id
          JOIN submissions s ON s.institution_id = a.institution_id AND s.submission_id = a.submission_id) w
       ON w.answers > 0
  LEFT JOIN llm_requests r ON r.institution_id = i.institution_id AND r.custom_id = i.custom_id
                          AND r.score IS NOT NULL
 WHERE i.institution_id = %(inst)s AND i.exam_day = %(day)s AND i.status = 'open'
 ORDER BY i.exam_id, i.question_id, i.review_id;
