-- Grades you can defend (issue 14). Rubric items: a question's rubric may be a list of criteria {id, description, points}
-- (negative points are deductions). The model decides each criterion with a short evidence quote from the
-- answer; GradeFlow computes the score from the decisions (never the model's total), clamped to
-- [0, max_points]. The decisions are kept on the model request, on every grade version (a reviewer's
-- ticks too) and in the released rows.
ALTER TABLE questions ADD COLUMN rubric_items jsonb;       -- [{id, description, points}], NULL: free-text rubric
ALTER TABLE llm_requests
    ADD COLUMN decisions   jsonb,                          -- [{id, met, points, evidence, evidence_found}]
    ADD COLUMN evidence_ok boolean;                        -- every met criterion's quote occurs in the answer
ALTER TABLE grades ADD COLUMN decisions jsonb;             -- the decisions this grade version was computed from
ALTER TABLE reviews ADD COLUMN decisions jsonb;            -- the rubric items a reviewer ticked, as received
ALTER TABLE release_results ADD COLUMN criteria jsonb;     -- the released grade's decisions

-- Calibrated routing: a model grade's confidence comes from the token log-probabilities of its decision values
-- when the reply has them, else from the model's self-report; which one is kept beside it.
ALTER TABLE llm_requests ADD COLUMN confidence_source text CHECK (confidence_source IN ('logprobs', 'self_report'));
ALTER TABLE batch_lines ADD COLUMN confidence_source text CHECK (confidence_source IN ('logprobs', 'self_report'));

INSERT INTO review_reasons (code, description) VALUES
    ('evidence_not_found', 'a criterion''s evidence quote does not occur in the answer (after whitespace normalisation)')
ON CONFLICT (code) DO NOTHING;
