-- 028: rule grading reads a numeric answer without a SQL function call per answer (issue 18, the prepare group).
-- Migration 026 let PostgreSQL inline the true/false parser into gradeflow_rule_score_keyed; the number parser
-- could not be inlined: its body calls pg_input_is_valid, which PostgreSQL declares STABLE (an input function may
-- read settings), and a function declared IMMUTABLE is never inlined into a body that is not. So every numeric
-- answer of grade_by_rule paid a SQL function call with its own executor (about half of the statement's scoring
-- time at 200k). The keyed score is now declared STABLE (what it is: its numbers come from the float8 and numeric
-- input functions) and reads the number with gradeflow_parse_number's expression written in place, so the whole
-- score is inlined into grade_by_rule's statement; the results are the same (tests/integration/test_rule_parity.py,
-- against tests/rules_reference.py).
-- gradeflow_parse_number and gradeflow_rule_score stay as they were (IMMUTABLE, never inlined): with a constant
-- answer, an inlined parser would be folded while the statement is planned, and the cast in a branch its guard
-- rules out (for example '1e-400'::float8) would fail there instead of giving 0. grade_by_rule passes a column.
CREATE OR REPLACE FUNCTION gradeflow_rule_score_keyed(qtype text, answer text, key_choices text[], key_bool boolean,
                                                      key_number float8, tolerance float8, max_points numeric)
    RETURNS numeric
    LANGUAGE sql STABLE PARALLEL SAFE
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
             CASE WHEN gradeflow_numeric_ok(
                      CASE WHEN gradeflow_strip(answer) !~ '^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$' THEN NULL
                           WHEN pg_input_is_valid(gradeflow_strip(answer), 'float8') THEN gradeflow_strip(answer)::float8
                           WHEN pg_input_is_valid(gradeflow_strip(answer), 'numeric')
                               THEN CASE WHEN abs(gradeflow_strip(answer)::numeric) < 1 THEN 0.0::float8 END
                           WHEN gradeflow_strip(answer) ~ '[eE]-' THEN 0.0::float8 END,  -- gradeflow_parse_number
                      key_number, tolerance) THEN max_points
                  ELSE 0 END
        ELSE 0 END;
