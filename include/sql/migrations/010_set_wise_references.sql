-- References checked per statement, not per row (issue 9), on the tables the night writes in bulk.
--
-- A foreign key checks each inserted or updated row with its own lookup and row lock on the referenced
-- row (a SELECT ... FOR KEY SHARE per row, which also rewrites the referenced row's header): grading a
-- 50,000-request job paid ~2.5 s in four such triggers on grades alone, and collecting rewrote every
-- request row once more per line just to lock it. Here each of those references is checked once per
-- statement instead, over the statement's transition table (an anti-join: every row at once), with
-- the same meaning: a row whose key columns are all set must find its referenced row (MATCH SIMPLE),
-- and a referenced row may not be deleted, nor its key changed, while a row still refers to it.
-- The error is a foreign_key_violation (SQLSTATE 23503) naming the table, the reference and one
-- offending key, as before.
--
-- What a per-row foreign key gave that this does not: the row lock that stops a concurrent transaction
-- from deleting the referenced row between the check and the commit. GradeFlow never deletes answers,
-- model requests, batch jobs or reviews (rows are superseded, never removed), so nothing races here.
--
-- The checks run with the owner's rights (SECURITY DEFINER), as a foreign key's checks do, so they do
-- not depend on which rows row-level security lets the writer see.

CREATE FUNCTION gradeflow_check_reference() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
-- TG_ARGV: 0 'child' (rows of this table must find their referenced row) or 'parent' (rows of this table
-- that went away, or whose key changed, must not be referenced), 1 the reference's name, 2 the other table, 3 this table's
-- columns, 4 the other table's columns (comma-separated, in the same order).
DECLARE
    mine text[] := string_to_array(TG_ARGV[3], ',');
    theirs text[] := string_to_array(TG_ARGV[4], ',');
    joined text;
    set_cols text;
    key_list text;
    bad text;
BEGIN
    IF TG_ARGV[0] = 'child' THEN
        SELECT string_agg(format('p.%I = n.%I', theirs[i], mine[i]), ' AND '),
               string_agg(format('n.%I IS NOT NULL', mine[i]), ' AND '),
               string_agg(format('n.%I::text', mine[i]), ' || '', '' || ')
          INTO joined, set_cols, key_list
          FROM generate_subscripts(mine, 1) AS i;
        EXECUTE format('SELECT %s FROM new_rows n WHERE %s AND NOT EXISTS (SELECT 1 FROM %I p WHERE %s) LIMIT 1',
                       key_list, set_cols, TG_ARGV[2], joined)
           INTO bad;
        IF bad IS NOT NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', CONSTRAINT = TG_ARGV[1],
                MESSAGE = format('insert or update on table "%s" violates reference "%s"', TG_TABLE_NAME, TG_ARGV[1]),
                DETAIL = format('Key (%s)=(%s) is not present in table "%s".', TG_ARGV[3], bad, TG_ARGV[2]);
        END IF;
    ELSIF TG_LEVEL = 'ROW' THEN
        -- A referenced row's key changed (a row trigger: it fires only when a key column is set to a new
        -- value, which GradeFlow never does): no row may still point at the old key.
        SELECT string_agg(format('c.%I::text = ($1 ->> %L)', theirs[i], mine[i]), ' AND '),
               string_agg(format('($1 ->> %L)', mine[i]), ' || '', '' || ')
          INTO joined, key_list
          FROM generate_subscripts(mine, 1) AS i;
        EXECUTE format('SELECT %s WHERE EXISTS (SELECT 1 FROM %I c WHERE %s)', key_list, TG_ARGV[2], joined)
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
        EXECUTE format('SELECT %s FROM old_rows o WHERE NOT EXISTS (SELECT 1 FROM %I k WHERE %s) '
                       'AND EXISTS (SELECT 1 FROM %I c WHERE %s) LIMIT 1',
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

-- Replace the foreign key of `child` (columns `cols`) to `parent` by statement-level checks on both sides.
CREATE FUNCTION gradeflow_set_wise_reference(child text, cols text[], parent text, parent_cols text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    fk name;
    ref text := child || '_' || array_to_string(cols, '_') || '_ref';
BEGIN
    SELECT c.conname INTO fk
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.conrelid = child::regclass AND c.confrelid = parent::regclass
       AND (SELECT array_agg(a.attname::text ORDER BY k.ord)
              FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) = cols;
    IF fk IS NULL THEN
        RAISE EXCEPTION 'no foreign key %(%) -> % to replace', child, array_to_string(cols, ', '), parent;
    END IF;
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', child, fk);
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_ins', child,
                   'child', ref, parent, array_to_string(cols, ','), array_to_string(parent_cols, ','));
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_upd', child,
                   'child', ref, parent, array_to_string(cols, ','), array_to_string(parent_cols, ','));
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_del', parent,
                   'parent', ref, child, array_to_string(parent_cols, ','), array_to_string(cols, ','));
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE OF %s ON %I FOR EACH ROW WHEN (%s) '
                   'EXECUTE FUNCTION gradeflow_check_reference(%L, %L, %L, %L, %L)', ref || '_pupd',
                   (SELECT string_agg(format('%I', c), ', ') FROM unnest(parent_cols) AS c), parent,
                   (SELECT string_agg(format('OLD.%I IS DISTINCT FROM NEW.%I', c, c), ' OR ')
                      FROM unnest(parent_cols) AS c),
                   'parent', ref, child, array_to_string(parent_cols, ','), array_to_string(cols, ','));
END $$;

-- Grades: written per answer by rule grading (a day's objective answers) and fanned out from model work.
SELECT gradeflow_set_wise_reference('grades', ARRAY['institution_id', 'submission_id', 'question_id'],
                                    'answers', ARRAY['institution_id', 'submission_id', 'question_id']);
SELECT gradeflow_set_wise_reference('grades', ARRAY['job_id'], 'batch_jobs', ARRAY['job_id']);
SELECT gradeflow_set_wise_reference('grades', ARRAY['review_id'], 'review_items', ARRAY['review_id']);
SELECT gradeflow_set_wise_reference('grades', ARRAY['review_line_id'], 'reviews', ARRAY['review_line_id']);
-- The review queue: a whole job's answers can go to review at once.
SELECT gradeflow_set_wise_reference('review_queue', ARRAY['institution_id', 'submission_id', 'question_id'],
                                    'answers', ARRAY['institution_id', 'submission_id', 'question_id']);
-- Model requests and the token ledger: written and updated a job (up to 50,000 lines) at a time.
SELECT gradeflow_set_wise_reference('llm_requests', ARRAY['job_id'], 'batch_jobs', ARRAY['job_id']);
SELECT gradeflow_set_wise_reference('llm_requests', ARRAY['institution_id'], 'institutions', ARRAY['institution_id']);
SELECT gradeflow_set_wise_reference('batch_lines', ARRAY['institution_id'], 'institutions', ARRAY['institution_id']);
SELECT gradeflow_set_wise_reference('batch_lines', ARRAY['custom_id'], 'llm_requests', ARRAY['custom_id']);
SELECT gradeflow_set_wise_reference('batch_lines', ARRAY['job_id'], 'batch_jobs', ARRAY['job_id']);

DROP FUNCTION gradeflow_set_wise_reference(text, text[], text, text[]);

-- The ledger's actual tokens, cost and outcome are written into each line once it is collected: room on
-- the page lets that update stay a heap-only tuple (no index touched).
ALTER TABLE batch_lines SET (fillfactor = 80);
