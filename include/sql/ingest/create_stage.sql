CREATE TEMP TABLE stage_answers (
    row_number     integer NOT NULL,
    submission_id  text NOT NULL,
    student_id     text NOT NULL,
    exam_id        text NOT NULL,
    question_id    text NOT NULL,
    answer_text    text NOT NULL,
    answer_sha256  text NOT NULL      -- no submitted_at: a submission's is its first row's (stage_firsts)
) ON COMMIT DROP;
-- The file's plans need the stage's size and how many submissions it holds, not fine histograms: ANALYZE
-- samples 3,000 rows instead of 30,000 (a file of 40,000 rows: ~0.03 s instead of ~0.2 s).
ALTER TABLE stage_answers ALTER row_number SET STATISTICS 10, ALTER submission_id SET STATISTICS 10,
                          ALTER student_id SET STATISTICS 10, ALTER exam_id SET STATISTICS 10,
                          ALTER question_id SET STATISTICS 10;
-- Each chunk's first row of each of its submissions, as the file's rows were staged (ingest._FileKeys):
-- stage_owners.sql sorts these instead of the whole stage.
CREATE TEMP TABLE stage_firsts (
    row_number     integer NOT NULL,
    submission_id  text NOT NULL,
    student_id     text NOT NULL,
    exam_id        text NOT NULL,
    submitted_at   timestamptz NOT NULL
) ON COMMIT DROP;
