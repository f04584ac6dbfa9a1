"""The tenant boundary against code holding a password (issue 15, docs/security.md).

Each test logs in as a role an attacker inside one institution could hold: an institution's own
worker login (gradeflow_worker_<id>, what its tasks use) or an analyst holding only its read-only
role, and tries what the issue found possible: another institution's rows and functions, a temporary
table shadowing one of ours, rebinding through set_config, references to another institution's rows,
table and advisory locks, and changing its own password.
"""

from __future__ import annotations

import hashlib
import re

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.grading import batch
from gradeflow.intake import contract

from .helpers import DAY, answers_for
from .test_isolation import (  # noqa: F401 - the fixtures, by name
    LAKE,
    _night,
    _tenant_tables,
    two_nights,
    two_nights_database,
)

SHARED = ("provider_enqueued", "gradeflow_tenant_roles", "gradeflow_org_limits")
SNAPSHOTS = {"two_nights": "two_nights_database"}  # as in test_isolation: the nights run once per module
LEDGER_COLUMNS = ("job_id bigint, tenant text, model text, tokens bigint, reserved_at timestamptz,"
                  " released_at timestamptz")


def _password(embedded_stack, role: str) -> str:
    return stack._secrets(embedded_stack.state_dir)[role]


def _login(embedded_stack, role: str, password: str | None = None) -> psycopg.Connection:
    return psycopg.connect(host="127.0.0.1", port=embedded_stack.pg_port, user=role, dbname=stack.GRADEFLOW_DB,
                           password=password or _password(embedded_stack, role), autocommit=True)


@pytest.fixture
def analyst(embedded_stack):
    """A login holding only northfield's read-only role, as an institution's analyst gets it."""
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        su.execute("DROP ROLE IF EXISTS analyst_north")
        su.execute(f"CREATE ROLE analyst_north LOGIN PASSWORD 'analyst-pw' IN ROLE {db.reader_role('northfield')}")
    connection = _login(embedded_stack, "analyst_north", "analyst-pw")
    yield connection
    connection.close()
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        su.execute("DROP ROLE analyst_north")


def _job(admin_conn, institution: str) -> int:
    return admin_conn.execute("SELECT min(job_id) FROM batch_jobs WHERE institution_id = %s",
                              (institution,)).fetchone()[0]


def test_every_definer_function_pins_search_path_and_is_not_executable_by_public(conn, admin_conn):
    functions = admin_conn.execute(
        "SELECT p.oid::regprocedure::text, coalesce(p.proconfig, '{}'),"
        "       EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x"
        "                WHERE x.grantee = 0 AND x.privilege_type = 'EXECUTE')"
        "  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef").fetchall()
    assert len(functions) >= 7  # 020 replaced 009's five reference checks by 010's one
    bad = [(name, config, public) for name, config, public in functions
           if "search_path=pg_catalog, public, pg_temp" not in config or public]
    assert bad == []
    worker_may = {r[0] for r in admin_conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace"
        " AND p.prosecdef AND has_function_privilege(%s, p.oid, 'EXECUTE')", (db.tenant_login("northfield"),))}
    assert {re.sub(r"\(.*", "", f) for f in worker_may} == {
        "gradeflow_role_institution", "gradeflow_lock_key", "gradeflow_reserve_enqueued",
        "gradeflow_release_enqueued", "gradeflow_analyse", "gradeflow_delete_questions"}


def test_rows_are_bound_to_the_login_role_not_to_a_setting(two_nights, admin_conn, embedded_stack):  # noqa: F811
    north, _ = two_nights
    tables = _tenant_tables(admin_conn)
    own = {t: admin_conn.execute(f"SELECT count(*) FROM {t} WHERE institution_id = 'northfield'").fetchone()[0]
           for t in tables}
    # Rebinding through the setting, unsetting it, taking the group role, shadowing the role map with a temp table.
    north.execute("SELECT set_config('gradeflow.institution', 'lakeshore', false)")
    north.execute("CREATE TEMP TABLE gradeflow_tenant_roles (role_name name, institution text)")
    north.execute("INSERT INTO gradeflow_tenant_roles VALUES (session_user, 'lakeshore')")
    for attempt in ("SELECT 1", "SELECT set_config('gradeflow.institution', '', false)",
                    f"SET ROLE {db.worker_role()}"):
        north.execute(attempt)
        for table in tables:
            seen = dict(north.execute(f"SELECT institution_id, count(*) FROM {table} GROUP BY 1").fetchall())
            assert seen.get("lakeshore", 0) == 0, f"{attempt}: northfield's login reads lakeshore's {table}"
            assert seen.get("northfield", 0) == own[table], f"{attempt}: northfield's login lost its {table}"
            if table != "audit_log":
                assert north.execute(f"UPDATE {table} SET institution_id = institution_id WHERE institution_id ="
                                     " 'lakeshore'").rowcount == 0
    # The code's own guard still refuses a connection whose login is another institution's.
    north.execute("RESET ROLE")
    with pytest.raises(db.TenantMismatch, match="gradeflow_worker_lakeshore"):
        db.connect(conn_id=db.tenant_conn_id("northfield"), institution="lakeshore")
    # The old shared login is gone: the group role cannot log in.
    assert admin_conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                              (db.worker_role(),)).fetchone()[0] is False


def test_the_token_ledger_is_reached_only_for_ones_own_jobs(two_nights, admin_conn, analyst, embedded_stack):  # noqa: F811
    north, lake = two_nights
    north_job, lake_job = _job(admin_conn, "northfield"), _job(admin_conn, "lakeshore")
    admin_conn.execute("DELETE FROM provider_enqueued")
    admin_conn.execute("INSERT INTO provider_enqueued (job_id, tenant, model, tokens) VALUES (%s, 'lakeshore',"
                       " 'gpt-4.1-mini', 1900000)", (lake_job,))
    reserve = "SELECT * FROM gradeflow_reserve_enqueued(%s, %s, 'gpt-4.1-mini', %s, %s, %s)"
    release = "SELECT gradeflow_release_enqueued(%s, %s)"
    # A read-only analyst may call neither function (EXECUTE was PUBLIC's), nor read the ledger.
    for statement, args in ((reserve, (north_job, "northfield", 10**12, 10**15, 10**15)),
                            (release, (lake_job, "lakeshore")), ("SELECT * FROM provider_enqueued", None)):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute(statement, args)
    # Northfield's login: not for another institution, not another's job under its own name.
    for statement, args in ((reserve, (lake_job, "lakeshore", 1, 10**6, 10**6)),
                            (reserve, (lake_job, "northfield", 1, 10**6, 10**6)),
                            (release, (lake_job, "lakeshore"))):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only"):
            north.execute(statement, args)
    assert north.execute(release, (lake_job, "northfield")).fetchone()[0] == 0
    for table in SHARED:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            north.execute(f"SELECT * FROM {table}")
    # A temporary ledger that shadows the real one changes nothing: the organisation's 2,000,000 are nearly
    # all held, so 200,000 more do not fit, whatever cap the caller passes.
    north.execute(f"CREATE TEMP TABLE provider_enqueued ({LEDGER_COLUMNS})")
    row = north.execute(reserve, (north_job, "northfield", 200_000, 10**15, 10**15)).fetchone()
    assert row[0] is False and row[1] == 1_900_000
    # A session that is no institution's login (the group's grants under another session user) is refused.
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        su.execute(f"SET ROLE {db.worker_role()}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only"):
            su.execute(release, (lake_job, "lakeshore"))
    assert admin_conn.execute("SELECT released_at IS NULL FROM provider_enqueued WHERE job_id = %s",
                              (lake_job,)).fetchone()[0]
    assert lake.execute(release, (lake_job, "lakeshore")).fetchone()[0] == 1  # the owner institution can


def test_no_reference_reaches_another_institutions_row(two_nights, admin_conn):  # noqa: F811
    north, _ = two_nights
    lake_file = admin_conn.execute("SELECT min(file_id) FROM ingested_files WHERE institution_id = 'lakeshore'"
                                   ).fetchone()[0]
    lake_job = _job(admin_conn, "lakeshore")
    lake_item = admin_conn.execute(
        "INSERT INTO review_items (institution_id, exam_day, exam_id, question_id, work_key, reason)"
        " VALUES ('lakeshore', '2026-01-01', 'e', 'q', 'queue:lake', 'low_confidence') RETURNING review_id"
    ).fetchone()[0]
    made_up_file, made_up_job, made_up_item = 10**12, 10**12, "rv-doesnotexist"
    submission = ("INSERT INTO submissions (institution_id, submission_id, exam_id, student_id, submitted_at,"
                  " exam_day, source_file_id) SELECT institution_id, 'x-' || submission_id, exam_id, student_id,"
                  " submitted_at, exam_day, %s FROM submissions LIMIT 1")
    job = "UPDATE llm_requests SET job_id = %s WHERE custom_id = (SELECT min(custom_id) FROM llm_requests)"
    review = ("INSERT INTO reviews (institution_id, exam_day, review_id, score, reviewer)"
              " VALUES ('northfield', '2026-01-01', %s, 1, 'r')")
    for statement, theirs, made_up in ((submission, lake_file, made_up_file), (job, lake_job, made_up_job),
                                       (review, lake_item, made_up_item)):
        errors = []
        for key in (theirs, made_up):
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as caught, north.transaction():
                north.execute(statement, (key,))
            diag = caught.value.diag
            errors.append(re.sub(rf"\b{re.escape(str(key))}\b", "<id>",
                                 f"{diag.message_primary} {diag.message_detail}"))
        assert errors[0] == errors[1], "another institution's id must fail exactly as an id that does not exist"
        assert "institution_id" in errors[0]


def test_no_institution_can_take_another_institutions_keys_first(conn, tenant_conn, admin_conn, s3, emulator,
                                                                openai_client):
    """Custom ids and job fingerprints are computable from an exam's ids and an answer's hash; written first by
    northfield, lakeshore's request used to be skipped and its job creation to fail on a row it cannot see."""
    lake = tenant_conn("lakeshore")
    rows = answers_for("s1", "st1", "Mitochondria turn glucose into ATP")
    free_text = [r for r in rows if r["question_id"] == "q4"][0]
    theirs = batch.custom_id(LAKE.id, DAY, "bio-101", "q4", contract.answer_sha256(free_text["answer"]))
    fingerprint = hashlib.sha256("\n".join([LAKE.id, LAKE.model, f"{theirs}@1"]).encode()).hexdigest()
    conn.execute("INSERT INTO llm_requests (custom_id, institution_id, exam_day, exam_id, question_id, answer_sha256,"
                 " first_fifo_seq, answer_count, est_tokens) VALUES (%s, 'northfield', %s, 'x', 'x', 'x', 1, 1, 1)",
                 (theirs, DAY))
    conn.execute("INSERT INTO batch_jobs (institution_id, exam_day, night, wave, fingerprint, model, input_key,"
                 " request_count, est_input_tokens) VALUES ('northfield', %s, %s, 1, %s, 'm', 'k', 1, 1)",
                 (DAY, DAY, fingerprint))
    _night(lake, s3, openai_client, LAKE, rows)  # publishes only when every answer has its one outcome
    request = admin_conn.execute("SELECT status, job_id FROM llm_requests WHERE institution_id = 'lakeshore'"
                                 " AND custom_id = %s", (theirs,)).fetchone()
    assert request is not None and request[0] == "graded"
    assert admin_conn.execute("SELECT institution_id, fingerprint FROM batch_jobs WHERE job_id = %s",
                              (request[1],)).fetchone() == ("lakeshore", fingerprint)
    # Surrogate keys come from sequences every institution shares: none of them is the tenant's to write, so it
    # can neither take another institution's next id nor learn which ids exist from a duplicate-key error.
    written = admin_conn.execute(
        "SELECT c.relname, a.attname FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid"
        "  JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
        " WHERE c.relnamespace = 'public'::regnamespace AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%'"
        "   AND c.relname = ANY(%s)", (_tenant_tables(admin_conn),)).fetchall()
    assert {t for t, _ in written} >= {"batch_jobs", "ingested_files", "grades", "rejected_rows", "audit_log"}
    grants = [(t, c, p) for t, c in written for p in ("INSERT", "UPDATE")
              if admin_conn.execute("SELECT has_column_privilege(%s, %s, %s, %s)",
                                    (db.tenant_login("northfield"), t, c, p)).fetchone()[0]]
    assert grants == []
    next_job = admin_conn.execute("SELECT last_value + 1 FROM batch_jobs_job_id_seq").fetchone()[0]
    for statement in (f"INSERT INTO batch_jobs (job_id, institution_id, exam_day, night, wave, fingerprint, model,"
                      f" input_key, request_count, est_input_tokens) VALUES ({next_job}, 'northfield', '{DAY}',"
                      f" '{DAY}', 1, 'f', 'm', 'k', 1, 1)",
                      f"UPDATE batch_jobs SET job_id = {next_job} WHERE institution_id = 'northfield'",
                      "UPDATE ingested_files SET file_id = file_id + 1000"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(statement)


def test_a_tenant_takes_no_table_lock_that_stalls_the_others(two_nights, admin_conn, analyst):  # noqa: F811
    north, lake = two_nights
    tables = _tenant_tables(admin_conn)
    # PostgreSQL 16 allows any LOCK TABLE mode to a role with table-wide UPDATE, DELETE or TRUNCATE, ROW EXCLUSIVE
    # with table-wide INSERT (column-level grants do not count): the worker has none of the four on any table
    # (019, 024), so no mode above ACCESS SHARE.
    table_wide = [(t, p) for t in tables for p in ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
                  if admin_conn.execute("SELECT has_table_privilege(%s, %s, %s)",
                                        (db.tenant_login("northfield"), t, p)).fetchone()[0]]
    assert table_wide == []
    for table in (*tables, *SHARED, "schema_migrations", "review_reasons", "gradeflow_lock_generations"):
        for mode in ("ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "EXCLUSIVE", "ACCESS EXCLUSIVE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), north.transaction():
                north.execute(f"LOCK TABLE {table} IN {mode} MODE NOWAIT")
    # Its own writes still take ROW EXCLUSIVE, and the other institution works on beside an open write.
    with north.transaction():
        north.execute("UPDATE answers SET answer_text = answer_text")
        north.execute("INSERT INTO audit_log (institution_id, actor, action) VALUES ('northfield', 't', 'open')")
        lake.execute("SET lock_timeout = '2s'")
        assert lake.execute("UPDATE answers SET answer_text = answer_text").rowcount > 0
        assert lake.execute("SELECT count(*) FROM answers").fetchone()[0] > 0
    # The night's writes still work: column-level UPDATE, and the one DELETE through its definer function.
    exam = north.execute("SELECT exam_id FROM exams LIMIT 1").fetchone()[0]
    assert north.execute("SELECT gradeflow_delete_questions('northfield', 'no-such-exam')").fetchone()[0] == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only its own"):
        north.execute("SELECT gradeflow_delete_questions('lakeshore', %s)", (exam,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        north.execute("DELETE FROM questions WHERE exam_id = 'no-such-exam'")
    # The analyst can take no lock stronger than ACCESS SHARE on its release tables.
    for mode in ("ROW EXCLUSIVE", "SHARE", "ACCESS EXCLUSIVE"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), analyst.transaction():
            analyst.execute(f"LOCK TABLE releases IN {mode} MODE NOWAIT")


def _held_advisory_keys(observer, pid: int) -> list[int]:
    """The advisory keys a backend holds, as any role can read them from pg_locks."""
    return [r[0] for r in observer.execute(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND objsubid = 1 AND pid = %s", (pid,))]


@pytest.mark.parametrize(("take", "release"), [("ingest/try_lock", "ingest/unlock"),
                                               ("grade/try_night_lock", "grade/night_unlock")])
def test_another_tenant_cannot_keep_an_institutions_advisory_lock(two_nights, tenant_conn, take, release):  # noqa: F811
    north, lake = two_nights
    params = {"inst": "northfield"}
    # Lakeshore watches northfield's lock while it is held (pg_locks shows it to every role) ...
    assert db.fetch_all(north, take, params)[0]["locked"] is True
    seen = _held_advisory_keys(lake, north.info.backend_pid)
    assert seen
    second = tenant_conn("northfield")  # ... northfield's own sessions still exclude each other ...
    assert db.fetch_all(second, take, params)[0]["locked"] is False
    db.fetch_all(north, release, params)
    for key in seen:  # ... and once it is let go, lakeshore takes every key it saw, and keeps them.
        assert lake.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0] is True
    # Northfield's next sweep gets the lock all the same (a new key: the squatter holds one nobody uses) ...
    assert db.fetch_all(second, take, params)[0]["locked"] is True
    assert not set(_held_advisory_keys(lake, second.info.backend_pid)) & set(seen)
    assert db.fetch_all(north, take, params)[0]["locked"] is False  # ... and still one northfield session at a time
    db.fetch_all(second, release, params)
    # The old, computable keys (hashtext of the institution) lock nothing either.
    lake.execute("SELECT pg_advisory_lock(%s, hashtext('northfield'))", (0x6772_6164,))
    assert db.fetch_all(north, take, params)[0]["locked"] is True
    db.fetch_all(north, release, params)
    lake.execute("SELECT pg_advisory_unlock_all()")


def test_the_ledger_and_migrate_locks_are_out_of_a_tenants_reach(two_nights, admin_conn):  # noqa: F811
    north, lake = two_nights
    north_job = _job(admin_conn, "northfield")
    admin_conn.execute("DELETE FROM provider_enqueued")
    reserve = "SELECT reserved FROM gradeflow_reserve_enqueued(%s, 'northfield', 'gpt-4.1-mini', 10, 10000, 10000)"
    north.execute("SET lock_timeout = '2s'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), lake.transaction():  # the lock reservations take now
        lake.execute("LOCK TABLE provider_enqueued IN SHARE ROW EXCLUSIVE MODE NOWAIT")
    with lake.transaction():
        # The old fixed ledger key and the migrator's key, held in an open transaction: nothing waits on them.
        lake.execute("SELECT pg_advisory_xact_lock(1869703523), pg_advisory_xact_lock(%s)", (0x6772_6164,))
        lake.execute("SELECT count(*) FROM schema_migrations")  # ACCESS SHARE on the migrations table
        assert north.execute(reserve, (north_job,)).fetchone()[0] is True
        admin_conn.execute("SET lock_timeout = '2s'")
        db.migrate(admin_conn)
        admin_conn.execute("RESET lock_timeout")


def test_a_login_that_changes_its_own_password_is_reported_and_reset_by_migrate(conn, admin_conn, embedded_stack,
                                                                                caplog):
    """PostgreSQL lets every role change its own password, and no event trigger sees ALTER ROLE (roles are
    shared objects): it cannot be refused from inside the database. `check` reports it, and the next migrate
    reports it too (a warning and an audit line) and sets the connection's password again."""
    login = db.tenant_login("northfield")
    conn.execute("ALTER ROLE CURRENT_USER PASSWORD 'locked-out'")  # PostgreSQL lets any role do this
    with pytest.raises(psycopg.OperationalError):
        _login(embedded_stack, login).close()
    assert db.main(["check"]) == 1
    assert f"ALERT login {login} (institution northfield) refuses the password" in caplog.text
    caplog.clear()
    db.migrate(admin_conn)  # from the institution's connection gradeflow_db_northfield
    assert f"ALERT login {login} (institution northfield) refused the password" in caplog.text
    assert admin_conn.execute("SELECT count(*) FROM audit_log WHERE action = 'login_password_reset'"
                              " AND institution_id = 'northfield'").fetchone()[0] == 1
    with _login(embedded_stack, login) as again:
        assert again.execute("SELECT gradeflow_role_institution()").fetchone()[0] == "northfield"
    caplog.clear()
    db.migrate(admin_conn)  # nothing changed since: no alert
    assert "ALERT" not in caplog.text
    assert db.main(["check"]) == 0
