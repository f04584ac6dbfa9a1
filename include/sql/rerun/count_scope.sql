SELECT count(*) AS answers FROM rerun_scope;
