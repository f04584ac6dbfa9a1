INSERT INTO llm_requests (custom_id, institution_id, exam_day, exam_id, question_id, answer_sha256, version,
                          first_fifo_seq, answer_count, est_tokens)
VALUES (%(custom_id)s, %(inst)s, %(day)s, %(exam_id)s, %(question_id)s, %(answer_sha256)s, %(version)s,
        %(first_fifo_seq)s, %(answer_count)s, %(est_tokens)s)
ON CONFLICT (custom_id) DO NOTHING;
