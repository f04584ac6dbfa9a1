-- Memory for the sorts and hashes of one file's set-based statements (inside the file's transaction).
SELECT set_config('work_mem', %(work_mem)s, true) AS work_mem;
