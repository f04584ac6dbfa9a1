CREATE TEMP TABLE stage_answers (
    row_number     integer NOT NULL,
    submission_id  text NOT NULL,
    student_id     text NOT NULL,
    exam_id        text NOT NULL,
    question_id    text NOT NULL,
    answer_text    text NOT NULL,
    answer_sha256  text NOT NULL,
    submitted_at   timestamptz NOT NULL
) ON COMMIT DROP;
