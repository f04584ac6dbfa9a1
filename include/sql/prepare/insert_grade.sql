INSERT INTO grades (institution_id, submission_id, question_id, exam_day, score, max_points, grader, model,
                    job_id, custom_id, attempt, version, rationale, confidence)
VALUES (%(inst)s, %(submission_id)s, %(question_id)s, %(day)s, %(score)s, %(max_points)s, %(grader)s, %(model)s,
        %(job_id)s, %(custom_id)s, %(attempt)s, %(version)s, %(rationale)s, %(confidence)s)
ON CONFLICT (institution_id, submission_id, question_id) WHERE is_current DO NOTHING;
