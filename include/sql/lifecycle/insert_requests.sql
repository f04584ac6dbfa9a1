-- New model requests from the staged groups, in one statement; a request that exists already is kept.
INSERT INTO llm_requests (custom_id, institution_id, exam_day, exam_id, question_id, answer_sha256, version,
                          first_fifo_seq, answer_count, est_tokens, est_input_tokens)
SELECT custom_id, %(inst)s, exam_day, exam_id, question_id, answer_sha256, version, first_fifo_seq,
       answer_count, est_input_tokens, est_input_tokens
  FROM new_llm_requests
ON CONFLICT DO NOTHING;
