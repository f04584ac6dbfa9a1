-- Deferred work of any earlier night (any exam day up to tonight's): a new night takes it first.
SELECT custom_id FROM llm_requests
 WHERE institution_id = %(inst)s AND status = 'deferred' AND exam_day <= %(day)s;
