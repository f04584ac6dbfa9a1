CREATE TEMP TABLE IF NOT EXISTS collected_lines (
    custom_id text, ok boolean, score numeric, raw_score numeric, rationale text, confidence numeric,
    input_tokens integer, output_tokens integer, cost_usd numeric(14, 6), error text, outcome text,
    decisions jsonb, evidence_ok boolean, confidence_source text
) ON COMMIT DELETE ROWS;
