-- How many answers the file's insert loaded (insert_answers.sql counted them per submission).
SELECT coalesce(sum(answers), 0)::integer AS loaded FROM stage_loaded;
