CREATE TEMP TABLE IF NOT EXISTS new_llm_requests (
    custom_id text, exam_day date, exam_id text, question_id text, answer_sha256 text, version integer,
    first_fifo_seq bigint, answer_count integer, est_input_tokens integer
) ON COMMIT DELETE ROWS;
