SELECT custom_id, exam_id, question_id, answer_sha256, est_tokens, first_fifo_seq, attempt
  FROM llm_requests
 WHERE institution_id = %(inst)s AND exam_day = %(day)s AND status = 'pending' AND version = %(version)s
 ORDER BY first_fifo_seq, custom_id;
