-- One mechanism and one naming scheme for the references that replaced per-row foreign keys (issue 13, item 4).
--
-- Until now three conventions stood side by side: 009's hand-written checks of answers and submissions
-- (their own functions, constraint names like answers_submission_ref, parents locked FOR KEY SHARE, key
-- updates checked per row), 010's generic gradeflow_check_reference (names <child>_<columns>_ref, no parent
-- lock, an anti-join over every UPDATE statement's rows) and 016's tenant references (<child>_0_<col>_tenant_ref).
-- From here on every such reference is 010's function with one scheme:
--   * reference (the CONSTRAINT named in a foreign_key_violation): <child>_<child columns joined by _>_ref;
--   * triggers: <ref>_ins (AFTER INSERT, per statement, over the inserted rows), <ref>_upd (AFTER UPDATE of the
--     child's key columns, per row and only when one of them changed: an update of other columns costs
--     nothing and captures no transition table), <ref>_del (AFTER DELETE on the parent, per statement),
--     <ref>_pupd (AFTER UPDATE of the parent's key, per row, only when it changed);
--   * lock: where a parent row can be deleted while a child is written (an exam's questions are deleted
--     when it is redefined; 009's parents generally), the child's check locks the referenced rows FOR KEY
--     SHARE, as a foreign key does, so a concurrent delete waits for the child's commit and then sees it.
--     Without it, a check and a concurrent delete could each miss the other's uncommitted row.
-- 009's functions and triggers are dropped; 010's and 016's triggers are re-created under the scheme from
-- their own arguments (so every reference of the schema is kept, whatever earlier migrations made).

CREATE OR REPLACE FUNCTION gradeflow_check_reference() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
-- TG_ARGV: 0 'child' (rows of this table must find their referenced row) or 'parent' (rows of this table
-- that went away, or whose key changed, must not be referenced), 1 the reference's name, 2 the other table,
-- 3 this table's columns, 4 the other table's columns (comma-separated, in the same order), 5 (child only,
-- optional) 'lock': lock the referenced rows FOR KEY SHARE until commit.
DECLARE
    mine text[] := string_to_array(TG_ARGV[3], ',');
    theirs text[] := string_to_array(TG_ARGV[4], ',');
    rows_from text;
    joined text;
    set_cols text;
    key_list text;
    bad text;
BEGIN
    IF TG_ARGV[0] = 'child' THEN
        -- Per statement: the statement's new rows; per row (a key update): this row.
        rows_from := CASE WHEN TG_LEVEL = 'ROW' THEN 'jsonb_populate_record(NULL::public.' || quote_ident(TG_TABLE_NAME)
                                                      || ', $1)' ELSE 'new_rows' END;
        SELECT string_agg(format('p.%I = n.%I', theirs[i], mine[i]), ' AND '),
               string_agg(format('n.%I IS NOT NULL', mine[i]), ' AND '),
               string_agg(format('n.%I::text', mine[i]), ' || '', '' || ')
          INTO joined, set_cols, key_list
          FROM generate_subscripts(mine, 1) AS i;
        IF TG_ARGV[5] IS NOT DISTINCT FROM 'lock' THEN
            EXECUTE format('SELECT 1 FROM public.%I p WHERE EXISTS (SELECT 1 FROM %s n WHERE %s) FOR KEY SHARE OF p',
                           TG_ARGV[2], rows_from, joined)
              USING CASE WHEN TG_LEVEL = 'ROW' THEN to_jsonb(NEW) END;
        END IF;
        EXECUTE format('SELECT %s FROM %s n WHERE %s AND NOT EXISTS (SELECT 1 FROM public.%I p WHERE %s) LIMIT 1',
                       key_list, rows_from, set_cols, TG_ARGV[2], joined)
           INTO bad USING CASE WHEN TG_LEVEL = 'ROW' THEN to_jsonb(NEW) END;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('insert or update on table "%s" violates reference "%s"', TG_TABLE_NAME, TG_ARGV[1]),
                DETAIL = format('Key (%s)=(%s) is not present in table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    ELSIF TG_LEVEL = 'ROW' THEN
        -- A referenced row's key changed (fires only when a key column is set to a new value, which
        -- GradeFlow never does): no row may still point at the old key.
        SELECT string_agg(format('c.%I::text = ($1 ->> %L)', theirs[i], mine[i]), ' AND '),
               string_agg(format('($1 ->> %L)', mine[i]), ' || '', '' || ')
          INTO joined, key_list
          FROM generate_subscripts(mine, 1) AS i;
        EXECUTE format('SELECT %s WHERE EXISTS (SELECT 1 FROM public.%I c WHERE %s)', key_list, TG_ARGV[2], joined)
           USING to_jsonb(OLD) INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('update on table "%s" violates reference "%s" on table "%s"',
                                 TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[2]),
                DETAIL = format('Key (%s)=(%s) is still referenced from table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    ELSE
        -- Keys of this (referenced) table that the statement removed and that no row has any more ...
        SELECT string_agg(format('c.%I = o.%I', theirs[i], mine[i]), ' AND '),
               string_agg(format('k.%I = o.%I', mine[i], mine[i]), ' AND '),
               string_agg(format('o.%I::text', mine[i]), ' || '', '' || ')
          INTO joined, set_cols, key_list
          FROM generate_subscripts(mine, 1) AS i;
        -- ... and that a row of the referencing table still points at.
        EXECUTE format('SELECT %s FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM public.%I k WHERE %s) '
                       'AND EXISTS (SELECT 1 FROM public.%I c WHERE %s) LIMIT 1',
                       key_list, TG_TABLE_NAME, set_cols, TG_ARGV[2], joined)
           INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('update or delete on table "%s" violates reference "%s" on table "%s"',
                                 TG_TABLE_NAME, TG_ARGV[1], TG_ARGV[2]),
                DETAIL = format('Key (%s)=(%s) is still referenced from table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION gradeflow_check_reference() FROM PUBLIC;

-- (Re)create one reference under the scheme; triggers of the same reference made before are dropped first.
CREATE FUNCTION gradeflow_reference(child text, cols text[], parent text, parent_cols text[], lock boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    ref constant text := child || '_' || array_to_string(cols, '_') || '_ref';
    args constant text := format('%L, %L, %L, %L', ref, parent, array_to_string(cols, ','),
                                 array_to_string(parent_cols, ','));
    parent_args constant text := format('%L, %L, %L, %L', ref, child, array_to_string(parent_cols, ','),
                                        array_to_string(cols, ','));
BEGIN
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(''child'', %s%s)', ref || '_ins', child, args,
                   CASE WHEN lock THEN ', ''lock''' ELSE '' END);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %I FOR EACH ROW WHEN (%s) '
                   'EXECUTE FUNCTION gradeflow_check_reference(''child'', %s%s)', ref || '_upd',
                   (SELECT string_agg(format('%I', c), ', ') FROM unnest(cols) AS c), child,
                   (SELECT string_agg(format('OLD.%I IS DISTINCT FROM NEW.%I', c, c), ' OR ') FROM unnest(cols) AS c),
                   args, CASE WHEN lock THEN ', ''lock''' ELSE '' END);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(''parent'', %s)', ref || '_del', parent, parent_args);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %I FOR EACH ROW WHEN (%s) '
                   'EXECUTE FUNCTION gradeflow_check_reference(''parent'', %s)', ref || '_pupd',
                   (SELECT string_agg(format('%I', c), ', ') FROM unnest(parent_cols) AS c), parent,
                   (SELECT string_agg(format('OLD.%I IS DISTINCT FROM NEW.%I', c, c), ' OR ')
                      FROM unnest(parent_cols) AS c),
                   parent_args);
END $$;

-- 009's checks go (their functions with them).
DROP TRIGGER answers_refs_insert ON answers;
DROP TRIGGER submissions_refs_insert ON submissions;
DROP TRIGGER answers_refs_update ON answers;
DROP TRIGGER submissions_refs_update ON submissions;
DROP TRIGGER answers_referenced_delete ON submissions;
DROP TRIGGER answers_referenced_delete ON questions;
DROP TRIGGER answers_referenced_delete ON ingested_files;
DROP TRIGGER submissions_referenced_delete ON exams;
DROP TRIGGER submissions_referenced_delete ON institutions;
DROP TRIGGER answers_referenced_key ON submissions;
DROP TRIGGER answers_referenced_key ON questions;
DROP TRIGGER answers_referenced_key ON ingested_files;
DROP TRIGGER submissions_referenced_key ON exams;
DROP TRIGGER submissions_referenced_key ON institutions;
DROP FUNCTION gradeflow_answers_refs_check();
DROP FUNCTION gradeflow_submissions_refs_check();
DROP FUNCTION gradeflow_refs_changed();
DROP FUNCTION gradeflow_answers_referenced();
DROP FUNCTION gradeflow_answers_key_changed();

-- 010's and 016's references, read from their child-side insert triggers' arguments (after 'child': the
-- reference's name, the parent, the child's columns, the parent's columns); every trigger of theirs is
-- dropped, then each reference is made again under the scheme. The references of answers and submissions to
-- their files keep 009's parent lock (009 locked the files too).
DO $$
DECLARE
    t record;
    refs jsonb := '[]';
    r jsonb;
BEGIN
    FOR t IN SELECT c.relname::text AS child, string_to_array(encode(g.tgargs, 'escape'), '\000') AS args
               FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
              WHERE g.tgfoid = 'gradeflow_check_reference'::regproc AND NOT g.tgisinternal
                AND g.tgtype & 4 = 4  -- ON INSERT
    LOOP
        IF t.args[1] = 'child' THEN
            refs := refs || jsonb_build_array(jsonb_build_object('child', t.child, 'parent', t.args[3],
                                                                   'cols', t.args[4], 'parent_cols', t.args[5]));
        END IF;
    END LOOP;
    FOR t IN SELECT g.tgname, c.relname FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
              WHERE g.tgfoid = 'gradeflow_check_reference'::regproc AND NOT g.tgisinternal LOOP
        EXECUTE format('DROP TRIGGER %I ON %I', t.tgname, t.relname);
    END LOOP;
    FOR r IN SELECT DISTINCT e FROM jsonb_array_elements(refs) AS e LOOP
        PERFORM gradeflow_reference(r ->> 'child', string_to_array(r ->> 'cols', ','), r ->> 'parent',
                                    string_to_array(r ->> 'parent_cols', ','),
                                    r ->> 'child' IN ('answers', 'submissions') AND r ->> 'parent' = 'ingested_files');
    END LOOP;
END $$;

-- 009's four references, now under the scheme, with their parent lock.
SELECT gradeflow_reference('answers', ARRAY['institution_id', 'submission_id'], 'submissions',
                           ARRAY['institution_id', 'submission_id'], true);
SELECT gradeflow_reference('answers', ARRAY['institution_id', 'exam_id', 'question_id'], 'questions',
                           ARRAY['institution_id', 'exam_id', 'question_id'], true);
SELECT gradeflow_reference('submissions', ARRAY['institution_id', 'exam_id'], 'exams',
                           ARRAY['institution_id', 'exam_id'], true);
SELECT gradeflow_reference('submissions', ARRAY['institution_id'], 'institutions', ARRAY['institution_id'], true);

DROP FUNCTION gradeflow_reference(text, text[], text, text[], boolean);
