-- Perf (issue 18): a release's rows refer to their release once per statement, not once per row.
--
-- release_results kept the plain foreign key of 001 on release_id: a release of a 1M-answer day fired
-- 1M row-level checks (a lookup and a FOR KEY SHARE lock on the same releases row each), about as much
-- time again as writing the rows (measured: 200,000 rows inserted in 2.6 s without it, 5.9 s with it).
-- It becomes 010's statement-level check (gradeflow_check_reference, over the statement's transition
-- table: one anti-join), on (institution_id, release_id) as 016 made every tenant reference: a result
-- row can only point at a release of its own institution. Same meaning as the foreign key otherwise: a
-- dangling release_id is refused with foreign_key_violation naming the reference and the key, and a
-- release that result rows still point at cannot be deleted or re-keyed. Releases are never deleted.
-- Names and trigger shapes follow 020's one scheme (reference release_results_institution_id_release_id_ref;
-- _ins per statement, _upd per row only when a key column changed, _del per statement on the parent, _pupd per
-- row on a parent key change); no parent lock: releases are never deleted.
ALTER TABLE release_results DROP CONSTRAINT release_results_release_id_fkey;

CREATE TRIGGER release_results_institution_id_release_id_ref_ins AFTER INSERT ON release_results
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION gradeflow_check_reference('child', 'release_results_institution_id_release_id_ref', 'releases',
                                               'institution_id,release_id', 'institution_id,release_id');
CREATE TRIGGER release_results_institution_id_release_id_ref_upd AFTER UPDATE OF institution_id, release_id
    ON release_results FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.release_id IS DISTINCT FROM NEW.release_id)
    EXECUTE FUNCTION gradeflow_check_reference('child', 'release_results_institution_id_release_id_ref', 'releases',
                                               'institution_id,release_id', 'institution_id,release_id');
CREATE TRIGGER release_results_institution_id_release_id_ref_del AFTER DELETE ON releases
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION gradeflow_check_reference('parent', 'release_results_institution_id_release_id_ref',
                                               'release_results', 'institution_id,release_id',
                                               'institution_id,release_id');
CREATE TRIGGER release_results_institution_id_release_id_ref_pupd AFTER UPDATE OF institution_id, release_id
    ON releases FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.release_id IS DISTINCT FROM NEW.release_id)
    EXECUTE FUNCTION gradeflow_check_reference('parent', 'release_results_institution_id_release_id_ref',
                                               'release_results', 'institution_id,release_id',
                                               'institution_id,release_id');
