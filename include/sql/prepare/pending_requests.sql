-- Requests waiting for a batch (any exam day up to the night's), in the order they are admitted:
-- exam day (carried-over days first), then first-in-first-out.
SELECT custom_id, exam_day, exam_id, question_id, first_fifo_seq, attempt, sends, est_input_tokens
  FROM llm_requests
 WHERE institution_id = %(inst)s AND status = 'pending' AND exam_day <= %(day)s
 ORDER BY exam_day, first_fifo_seq, custom_id;
