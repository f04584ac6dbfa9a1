-- publish/release_rows sorted by PostgreSQL, in the order the export writes (exam, submission, question, in byte
-- order as Arrow compares them): for a release too big to hold and sort in Arrow (publish.EXPORT_SORT_BYTES), streamed.
-- The placeholder takes the text of publish/release_rows.
{release_rows}
 ORDER BY exam_id COLLATE "C", submission_id COLLATE "C", question_id COLLATE "C";
