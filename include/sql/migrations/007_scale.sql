-- Scale (issue 9): the night's work as set-based SQL, with plans that do not depend on luck.
--
-- 1. Rule grading in the database: the semantics of gradeflow/rules.py as SQL functions (one
--    INSERT ... SELECT grades a whole day; tests/unit/test_rules.py checks both agree case by case).
--    Whitespace is Python's (str.isspace: ASCII and Unicode spaces); letters are compared upper-cased
--    in ASCII only, so the result never depends on the database's locale.

-- Python's str.strip(): trim every character for which str.isspace() is true.
CREATE FUNCTION gradeflow_strip(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN btrim(t, E' \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000');

-- ASCII upper case (rules.choices): 'a,c' and 'A, C' choose the same options in any locale.
CREATE FUNCTION gradeflow_ascii_upper(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN translate(t, 'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ');

-- rules.choices: the set of option letters in an answer like 'b', 'A,C' or 'a; c' (sorted, distinct).
CREATE FUNCTION gradeflow_choices(t text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT DISTINCT gradeflow_ascii_upper(p) COLLATE "C"
                   FROM regexp_split_to_table(t, E'[ \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000,;/|]+') AS p
                  WHERE p <> ''
                  ORDER BY 1);

-- The keyed options of a multiple-choice question (a letter or a list of letters), in the same form.
CREATE FUNCTION gradeflow_key_choices(k jsonb) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(SELECT DISTINCT gradeflow_ascii_upper(gradeflow_strip(e)) COLLATE "C"
                   FROM jsonb_array_elements_text(CASE jsonb_typeof(k) WHEN 'array' THEN k
                                                       ELSE jsonb_build_array(k) END) AS e
                  ORDER BY 1);

-- rules.parse_bool: true/false, t/f, yes/no, 1/0 (any case); NULL when it is none of them.
CREATE FUNCTION gradeflow_parse_bool(t text) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN lower(gradeflow_strip(t)) IN ('true', 't', 'yes', 'y', '1') THEN true
                WHEN lower(gradeflow_strip(t)) IN ('false', 'f', 'no', 'n', '0') THEN false END;

-- rules.parse_number: a finite number written with ASCII digits and '.' as the decimal mark (an
-- optional sign and exponent); NULL for anything else. A number too small for a double is 0 (as
-- Python's float() rounds it), one too large is not finite (NULL).
CREATE FUNCTION gradeflow_parse_number(t text) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN gradeflow_strip(t) !~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$' THEN NULL
                WHEN pg_input_is_valid(gradeflow_strip(t), 'float8') THEN gradeflow_strip(t)::float8
                WHEN pg_input_is_valid(gradeflow_strip(t), 'numeric')
                    THEN CASE WHEN abs(gradeflow_strip(t)::numeric) < 1 THEN 0.0::float8 END
                WHEN gradeflow_strip(t) ~ '[eE]-' THEN 0.0::float8 END;

-- rules.grade_numeric's test: |answer - key| <= tolerance (+ 1e-9 for binary rounding), in doubles.
CREATE FUNCTION gradeflow_numeric_ok(answer float8, key float8, tolerance float8) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN answer IS NULL OR key IS NULL THEN false
                WHEN abs(answer) > 1e300 OR abs(key) > 1e300 THEN answer = key  -- no overflow in the difference
                ELSE abs(answer - key) <= coalesce(tolerance, 0) + 1e-9::float8 END;

-- The keyed truth value of a true/false question, and the keyed number of a numeric one (else NULL).
CREATE FUNCTION gradeflow_key_bool(k jsonb) RETURNS boolean
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN jsonb_typeof(k) = 'boolean' THEN k::boolean END;

CREATE FUNCTION gradeflow_key_number(k jsonb) RETURNS float8
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN CASE WHEN jsonb_typeof(k) = 'number' THEN k::float8 END;

-- rules.grade with the question's key already read (grade_by_rule reads each question's key once,
-- not once per answer). Multiple choice: one option without separators is compared directly; only
-- answers with several parts are split, de-duplicated and sorted.
CREATE FUNCTION gradeflow_rule_score_keyed(qtype text, answer text, key_choices text[], key_bool boolean,
                                           key_number float8, tolerance float8, max_points numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE
        WHEN qtype = 'multiple_choice' THEN
             CASE WHEN key_choices IS NULL THEN 0
                  WHEN gradeflow_strip(answer) !~ E'[ \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000,;/|]'
                       THEN CASE WHEN ARRAY[gradeflow_ascii_upper(gradeflow_strip(answer))] = key_choices
                                  AND gradeflow_strip(answer) <> '' THEN max_points ELSE 0 END
                  WHEN gradeflow_choices(answer) = key_choices THEN max_points ELSE 0 END
        WHEN qtype = 'true_false' THEN
             CASE WHEN gradeflow_parse_bool(answer) = key_bool THEN max_points ELSE 0 END
        WHEN qtype = 'numeric' THEN
             CASE WHEN gradeflow_numeric_ok(gradeflow_parse_number(answer), key_number, tolerance) THEN max_points
                  ELSE 0 END
        ELSE 0 END;

-- rules.grade: the score of one answer to a rule-graded question (0 for any other type).
CREATE FUNCTION gradeflow_rule_score(qtype text, answer text, answer_key jsonb, tolerance numeric,
                                     max_points numeric) RETURNS numeric
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN gradeflow_rule_score_keyed(qtype, answer,
                                      CASE WHEN qtype = 'multiple_choice' THEN gradeflow_key_choices(answer_key) END,
                                      gradeflow_key_bool(answer_key), gradeflow_key_number(answer_key),
                                      tolerance::float8, max_points);

-- 2. The answer_lifecycle view, same columns and meaning, without a query per answer: an answer's open
--    model request (the newest version still pending, queued or deferred) comes from one DISTINCT ON pass
--    joined by hash, instead of a LATERAL lookup per answer (a million index probes on a big day).
--    The institution and day the caller filters on reach every table (the join keys carry them).
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
  LEFT JOIN grades g ON g.institution_id = a.institution_id AND g.submission_id = a.submission_id
                    AND g.question_id = a.question_id AND g.is_current
  LEFT JOIN review_queue v ON v.institution_id = a.institution_id AND v.submission_id = a.submission_id
                          AND v.question_id = a.question_id AND v.resolved_at IS NULL
  LEFT JOIN (
        SELECT DISTINCT ON (lr.institution_id, lr.exam_day, lr.exam_id, lr.question_id, lr.answer_sha256)
               lr.institution_id, lr.exam_day, lr.exam_id, lr.question_id, lr.answer_sha256,
               lr.custom_id, lr.status, lr.deferred_reason
          FROM llm_requests lr
         WHERE lr.status IN ('pending', 'queued', 'deferred')
         ORDER BY lr.institution_id, lr.exam_day, lr.exam_id, lr.question_id, lr.answer_sha256, lr.version DESC
       ) r ON r.institution_id = a.institution_id AND r.exam_day = a.exam_day AND r.exam_id = a.exam_id
          AND r.question_id = a.question_id AND r.answer_sha256 = a.answer_sha256;

