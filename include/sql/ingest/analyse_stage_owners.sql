-- Statistics of the file's submissions (a temp table of the transaction): the answers insert joins it.
ANALYZE stage_owners;
