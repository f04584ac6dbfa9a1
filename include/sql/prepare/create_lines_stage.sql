CREATE TEMP TABLE IF NOT EXISTS staged_lines (
    custom_id text, est_input_tokens integer, est_output_tokens integer
) ON COMMIT DELETE ROWS;
