-- Scale (issue 9): the references of answers and submissions are checked set-wise, once per statement,
-- instead of by three per-row foreign-key triggers each. Loading a day's answers fired three RI checks per row (to
-- submissions, questions and ingested_files): about 40% of the INSERT's time, and their per-row plans,
-- cached while the tables were small, are what made a first big day take minutes on stale statistics.
--
-- The promise is the same as the foreign keys' (NO ACTION): an answer whose submission, question or
-- source file does not exist is refused with foreign_key_violation, naming the key; a submission,
-- question or file that answers still refer to cannot be deleted or have its key changed. As a foreign
-- key does, the check locks the referenced rows FOR KEY SHARE (so they cannot vanish before commit) and
-- sees every institution's rows (SECURITY DEFINER: the owner's view, as an RI check bypasses row-level
-- security). The checks are anti-joins over the statement's transition table: one pass per statement.
ALTER TABLE answers DROP CONSTRAINT answers_institution_id_submission_id_fkey,
                    DROP CONSTRAINT answers_institution_id_exam_id_question_id_fkey,
                    DROP CONSTRAINT answers_source_file_id_fkey;

CREATE FUNCTION gradeflow_answers_refs_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    PERFORM 1 FROM submissions s
     WHERE (s.institution_id, s.submission_id) IN (SELECT institution_id, submission_id FROM added)
       FOR KEY SHARE OF s;
    PERFORM 1 FROM questions q
     WHERE (q.institution_id, q.exam_id, q.question_id) IN (SELECT institution_id, exam_id, question_id FROM added)
       FOR KEY SHARE OF q;
    PERFORM 1 FROM ingested_files f WHERE f.file_id IN (SELECT source_file_id FROM added) FOR KEY SHARE OF f;
    SELECT a.institution_id, a.submission_id INTO bad FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM submissions s
                        WHERE s.institution_id = a.institution_id AND s.submission_id = a.submission_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "answers" violates foreign key constraint "answers_submission_ref"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'answers_submission_ref',
                  DETAIL = format('Key (institution_id, submission_id)=(%s, %s) is not present in table "submissions".',
                                  bad.institution_id, bad.submission_id);
    END IF;
    SELECT a.institution_id, a.exam_id, a.question_id INTO bad FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM questions q WHERE q.institution_id = a.institution_id
                          AND q.exam_id = a.exam_id AND q.question_id = a.question_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "answers" violates foreign key constraint "answers_question_ref"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'answers_question_ref',
                  DETAIL = format('Key (institution_id, exam_id, question_id)=(%s, %s, %s) is not present in table '
                                  '"questions".', bad.institution_id, bad.exam_id, bad.question_id);
    END IF;
    SELECT a.source_file_id INTO bad FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM ingested_files f WHERE f.file_id = a.source_file_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "answers" violates foreign key constraint "answers_source_file_ref"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'answers_source_file_ref',
                  DETAIL = format('Key (source_file_id)=(%s) is not present in table "ingested_files".',
                                  bad.source_file_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER answers_refs_insert AFTER INSERT ON answers REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_answers_refs_check();

-- Submissions likewise (their exam, institution and source file; a day's submissions fired three RI
-- checks per row too).
ALTER TABLE submissions DROP CONSTRAINT submissions_institution_id_fkey,
                        DROP CONSTRAINT submissions_institution_id_exam_id_fkey,
                        DROP CONSTRAINT submissions_source_file_id_fkey;

CREATE FUNCTION gradeflow_submissions_refs_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    bad record;
BEGIN
    PERFORM 1 FROM exams e WHERE (e.institution_id, e.exam_id) IN (SELECT institution_id, exam_id FROM added)
       FOR KEY SHARE OF e;
    PERFORM 1 FROM institutions i WHERE i.institution_id IN (SELECT institution_id FROM added) FOR KEY SHARE OF i;
    PERFORM 1 FROM ingested_files f WHERE f.file_id IN (SELECT source_file_id FROM added) FOR KEY SHARE OF f;
    SELECT a.institution_id, a.exam_id INTO bad FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM exams e WHERE e.institution_id = a.institution_id AND e.exam_id = a.exam_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "submissions" violates foreign key constraint "submissions_exam_ref"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'submissions_exam_ref',
                  DETAIL = format('Key (institution_id, exam_id)=(%s, %s) is not present in table "exams".',
                                  bad.institution_id, bad.exam_id);
    END IF;
    SELECT a.institution_id INTO bad FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM institutions i WHERE i.institution_id = a.institution_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "submissions" violates foreign key constraint '
                        '"submissions_institution_ref"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'submissions_institution_ref',
                  DETAIL = format('Key (institution_id)=(%s) is not present in table "institutions".', bad.institution_id);
    END IF;
    SELECT a.source_file_id INTO bad FROM added a
     WHERE NOT EXISTS (SELECT 1 FROM ingested_files f WHERE f.file_id = a.source_file_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert or update on table "submissions" violates foreign key constraint '
                        '"submissions_source_file_ref"'
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'submissions_source_file_ref',
                  DETAIL = format('Key (source_file_id)=(%s) is not present in table "ingested_files".',
                                  bad.source_file_id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER submissions_refs_insert AFTER INSERT ON submissions REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_submissions_refs_check();

-- An update that changes a reference column of an answer or a submission is checked like an insert, per
-- row and only for a row whose reference did change (nothing in the night does; fifo_seq updates pass free).
CREATE FUNCTION gradeflow_refs_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    ok boolean;
BEGIN
    IF TG_TABLE_NAME = 'answers' THEN
        ok := EXISTS (SELECT 1 FROM submissions s WHERE s.institution_id = NEW.institution_id
                                                    AND s.submission_id = NEW.submission_id FOR KEY SHARE)
              AND EXISTS (SELECT 1 FROM questions q WHERE q.institution_id = NEW.institution_id
                             AND q.exam_id = NEW.exam_id AND q.question_id = NEW.question_id FOR KEY SHARE)
              AND EXISTS (SELECT 1 FROM ingested_files f WHERE f.file_id = NEW.source_file_id FOR KEY SHARE);
    ELSE
        ok := EXISTS (SELECT 1 FROM exams e WHERE e.institution_id = NEW.institution_id
                                              AND e.exam_id = NEW.exam_id FOR KEY SHARE)
              AND EXISTS (SELECT 1 FROM institutions i WHERE i.institution_id = NEW.institution_id FOR KEY SHARE)
              AND EXISTS (SELECT 1 FROM ingested_files f WHERE f.file_id = NEW.source_file_id FOR KEY SHARE);
    END IF;
    IF NOT ok THEN
        RAISE EXCEPTION 'update on table "%" sets a reference to a row that does not exist', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER answers_refs_update AFTER UPDATE OF institution_id, submission_id, exam_id, question_id, source_file_id
    ON answers FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.submission_id IS DISTINCT FROM NEW.submission_id
          OR OLD.exam_id IS DISTINCT FROM NEW.exam_id OR OLD.question_id IS DISTINCT FROM NEW.question_id
          OR OLD.source_file_id IS DISTINCT FROM NEW.source_file_id)
    EXECUTE FUNCTION gradeflow_refs_changed();
CREATE TRIGGER submissions_refs_update AFTER UPDATE OF institution_id, exam_id, source_file_id ON submissions FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.exam_id IS DISTINCT FROM NEW.exam_id
          OR OLD.source_file_id IS DISTINCT FROM NEW.source_file_id)
    EXECUTE FUNCTION gradeflow_refs_changed();

-- The referenced side: rows that answers still refer to cannot go (deleted, or their key changed).
CREATE FUNCTION gradeflow_answers_referenced() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    found_ref boolean;
BEGIN
    IF TG_TABLE_NAME = 'submissions' THEN
        SELECT EXISTS (SELECT 1 FROM gone g JOIN answers a ON a.institution_id = g.institution_id
                                                          AND a.submission_id = g.submission_id
                        WHERE NOT EXISTS (SELECT 1 FROM submissions s WHERE s.institution_id = g.institution_id
                                                                        AND s.submission_id = g.submission_id))
          INTO found_ref;
    ELSIF TG_TABLE_NAME = 'questions' THEN
        SELECT EXISTS (SELECT 1 FROM gone g JOIN answers a ON a.institution_id = g.institution_id
                                                          AND a.exam_id = g.exam_id AND a.question_id = g.question_id
                        WHERE NOT EXISTS (SELECT 1 FROM questions q WHERE q.institution_id = g.institution_id
                                            AND q.exam_id = g.exam_id AND q.question_id = g.question_id))
          INTO found_ref;
    ELSIF TG_TABLE_NAME = 'exams' THEN
        SELECT EXISTS (SELECT 1 FROM gone g JOIN submissions s ON s.institution_id = g.institution_id
                                                              AND s.exam_id = g.exam_id
                        WHERE NOT EXISTS (SELECT 1 FROM exams e WHERE e.institution_id = g.institution_id
                                                                  AND e.exam_id = g.exam_id))
          INTO found_ref;
    ELSIF TG_TABLE_NAME = 'institutions' THEN
        SELECT EXISTS (SELECT 1 FROM gone g JOIN submissions s ON s.institution_id = g.institution_id
                        WHERE NOT EXISTS (SELECT 1 FROM institutions i WHERE i.institution_id = g.institution_id))
          INTO found_ref;
    ELSE
        SELECT EXISTS (SELECT 1 FROM gone g JOIN answers a ON a.source_file_id = g.file_id
                        WHERE NOT EXISTS (SELECT 1 FROM ingested_files f WHERE f.file_id = g.file_id))
                OR EXISTS (SELECT 1 FROM gone g JOIN submissions s ON s.source_file_id = g.file_id
                            WHERE NOT EXISTS (SELECT 1 FROM ingested_files f WHERE f.file_id = g.file_id))
          INTO found_ref;
    END IF;
    IF found_ref THEN
        RAISE EXCEPTION 'update or delete on table "%" violates a foreign key: answers or submissions refer to it',
                        TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Rows of "%s" are still referenced from "answers" or "submissions".', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER answers_referenced_delete AFTER DELETE ON submissions REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_answers_referenced();
CREATE TRIGGER answers_referenced_delete AFTER DELETE ON questions REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_answers_referenced();
CREATE TRIGGER answers_referenced_delete AFTER DELETE ON ingested_files REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_answers_referenced();
CREATE TRIGGER submissions_referenced_delete AFTER DELETE ON exams REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_answers_referenced();
CREATE TRIGGER submissions_referenced_delete AFTER DELETE ON institutions REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION gradeflow_answers_referenced();

-- A key change is checked per row, and only for a row whose key did change (the WHEN clause costs
-- nothing to the night's updates of other columns, e.g. fifo_seq or a file's counts).
CREATE FUNCTION gradeflow_answers_key_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    referenced boolean;
BEGIN
    IF TG_TABLE_NAME = 'submissions' THEN
        referenced := EXISTS (SELECT 1 FROM answers a WHERE a.institution_id = OLD.institution_id
                                                          AND a.submission_id = OLD.submission_id);
    ELSIF TG_TABLE_NAME = 'questions' THEN
        referenced := EXISTS (SELECT 1 FROM answers a WHERE a.institution_id = OLD.institution_id
                                                          AND a.exam_id = OLD.exam_id AND a.question_id = OLD.question_id);
    ELSIF TG_TABLE_NAME = 'exams' THEN
        referenced := EXISTS (SELECT 1 FROM submissions s WHERE s.institution_id = OLD.institution_id
                                                              AND s.exam_id = OLD.exam_id);
    ELSIF TG_TABLE_NAME = 'institutions' THEN
        referenced := EXISTS (SELECT 1 FROM submissions s WHERE s.institution_id = OLD.institution_id);
    ELSE
        referenced := EXISTS (SELECT 1 FROM answers a WHERE a.source_file_id = OLD.file_id)
                      OR EXISTS (SELECT 1 FROM submissions s WHERE s.source_file_id = OLD.file_id);
    END IF;
    IF referenced THEN
        RAISE EXCEPTION 'update on table "%" changes a key that table "answers" refers to', TG_TABLE_NAME
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER answers_referenced_key AFTER UPDATE OF institution_id, submission_id ON submissions FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.submission_id IS DISTINCT FROM NEW.submission_id)
    EXECUTE FUNCTION gradeflow_answers_key_changed();
CREATE TRIGGER answers_referenced_key AFTER UPDATE OF institution_id, exam_id, question_id ON questions FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.exam_id IS DISTINCT FROM NEW.exam_id
          OR OLD.question_id IS DISTINCT FROM NEW.question_id)
    EXECUTE FUNCTION gradeflow_answers_key_changed();
CREATE TRIGGER answers_referenced_key AFTER UPDATE OF file_id ON ingested_files FOR EACH ROW
    WHEN (OLD.file_id IS DISTINCT FROM NEW.file_id)
    EXECUTE FUNCTION gradeflow_answers_key_changed();
CREATE TRIGGER submissions_referenced_key AFTER UPDATE OF institution_id, exam_id ON exams FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id OR OLD.exam_id IS DISTINCT FROM NEW.exam_id)
    EXECUTE FUNCTION gradeflow_answers_key_changed();
CREATE TRIGGER submissions_referenced_key AFTER UPDATE OF institution_id ON institutions FOR EACH ROW
    WHEN (OLD.institution_id IS DISTINCT FROM NEW.institution_id)
    EXECUTE FUNCTION gradeflow_answers_key_changed();
REVOKE ALL ON FUNCTION gradeflow_answers_refs_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION gradeflow_answers_referenced() FROM PUBLIC;
REVOKE ALL ON FUNCTION gradeflow_answers_key_changed() FROM PUBLIC;
REVOKE ALL ON FUNCTION gradeflow_submissions_refs_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION gradeflow_refs_changed() FROM PUBLIC;
