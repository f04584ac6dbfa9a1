-- Statistics of the staged release rows (a table of this transaction: autovacuum never sees it), so the copy
-- joins them to submissions and grades by hash on their real size.
ANALYZE release_rows;
