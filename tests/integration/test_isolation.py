"""Isolation enforced by PostgreSQL: row-level security, the least-privilege worker, read-only roles."""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from devstack import stack
from gradeflow.airflow import tasks
from gradeflow.core import db
from gradeflow.core.config import get_institution
from gradeflow.grading import night as grading
from gradeflow.grading import prepare
from gradeflow.grading.context import Night
from gradeflow.intake.ingest import ingest_institution
from gradeflow.release import publish

from .helpers import DAY, answers_for, csv_bytes, exam_bytes, put
from .test_pipeline import GOOD, _wait

EXAM_DAY = date.fromisoformat(DAY)
NORTH, LAKE = get_institution("northfield"), get_institution("lakeshore")
# Tables every night writes: after one night of each institution, each holds rows of both.
NIGHT_TABLES = {"institutions", "ingested_files", "exams", "questions", "submissions", "answers", "rejected_rows",
                "batch_jobs", "llm_requests", "grades", "validation_runs", "releases", "release_results", "audit_log"}


def _tenant_tables(conn) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'institution_id'"
        " AND NOT a.attisdropped WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"
        " ORDER BY 1")]


def _night(conn, s3, client, inst, rows) -> None:
    """One institution's whole night on its own bound connection, as the worker role (as the tasks run it)."""
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/exams/bio-101.json", exam_bytes())
    put(s3, f"incoming/{inst.s3_prefix}/{DAY}/submissions/a.csv", csv_bytes(rows))
    ingest_institution(inst, conn, s3)
    prepare.order_submissions(conn, inst, EXAM_DAY)
    prepare.grade_by_rule(conn, inst, EXAM_DAY)
    tonight = Night(inst, EXAM_DAY, conn, s3, client)
    prepare.build_batches(tonight)
    for job_id in grading.submit_jobs(tonight):
        _wait(client, conn)
        grading.collect_job(tonight, job_id)
    gate = publish.validate(conn, inst, EXAM_DAY)
    assert gate.success, gate.failures
    released = publish.release(conn, inst, EXAM_DAY, gate.validation_id)
    publish.export(conn, s3, inst, EXAM_DAY, released["release_id"])
    with conn.transaction():
        db.audit(conn, "test", "night_done", inst.id, EXAM_DAY)


# A test that asks for two_nights starts on its own copy of the database both nights left (tests/conftest.py,
# fresh_database): the nights run once per module, not once per test.
SNAPSHOTS = {"two_nights": "two_nights_database"}


@pytest.fixture(scope="module")
def two_nights_database(databases, _s3_client, _emulator_http):
    """Northfield and lakeshore each ran a night (same exam and submission ids, one bad row each), on the bucket and
    emulator as the s3 and emulator fixtures leave them: run once per module, its database kept as a snapshot."""
    from gradeflow.grading.providers.openai_batch import client as openai_client

    databases.new()
    stack.empty_bucket(_s3_client)
    _emulator_http.post("/_emulator/reset").raise_for_status()
    bad = [{**answers_for("s9", "st9")[0], "submitted_at": "not a time"}]
    client = openai_client()
    with db.connect(institution="northfield") as north, db.connect(institution="lakeshore") as lake:
        _night(north, _s3_client, client, NORTH, answers_for("s1", "st1", GOOD) + answers_for("s2", "st2") + bad)
        _night(lake, _s3_client, client, LAKE, answers_for("s1", "other-student", "nothing relevant") + bad)
    snapshot = databases.snapshot("two_nights")
    yield snapshot
    databases.drop(snapshot)


@pytest.fixture
def two_nights(conn, tenant_conn):
    """The test's connections of northfield and lakeshore, on its own copy of the database after both nights."""
    return conn, tenant_conn("lakeshore")


def test_every_table_with_institution_id_has_forced_row_level_security(conn, admin_conn):
    tables = _tenant_tables(admin_conn)
    assert set(tables) >= NIGHT_TABLES
    secured = {r[0]: (r[1], r[2]) for r in admin_conn.execute(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)"
        " AND relnamespace = 'public'::regnamespace", (tables,))}
    policies = {(r[0], r[1]) for r in admin_conn.execute(
        "SELECT tablename, policyname FROM pg_policies WHERE schemaname = 'public'")}
    missing = [t for t in tables if secured[t] != (True, True) or (t, "gradeflow_tenant") not in policies]
    assert missing == [], f"tables with institution_id but without forced row-level security: {missing}"
    others = {r[0] for r in admin_conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")} - set(tables)
    assert others <= db.GLOBAL_TABLES, (f"tables without institution_id: {sorted(others - db.GLOBAL_TABLES)}; "
                                        "add institution_id (isolation) or list them in db.GLOBAL_TABLES with a reason")


def test_a_table_added_by_a_later_migration_gets_row_level_security(conn, admin_conn):
    admin_conn.execute("CREATE TABLE later_feature (institution_id text NOT NULL, note text)")
    try:
        admin_conn.execute("INSERT INTO later_feature VALUES ('northfield', 'n'), ('lakeshore', 'l')")
        db.migrate(admin_conn)  # the migrate step ends by enforcing isolation on every such table
        forced = admin_conn.execute("SELECT relrowsecurity AND relforcerowsecurity FROM pg_class"
                                    " WHERE relname = 'later_feature'").fetchone()[0]
        assert forced
        assert conn.execute("SELECT institution_id, note FROM later_feature").fetchall() == [("northfield", "n")]
    finally:
        admin_conn.execute("DROP TABLE later_feature")


def test_a_view_that_would_bypass_row_level_security_fails_the_migration(conn, admin_conn):
    admin_conn.execute("CREATE VIEW leaky AS SELECT institution_id, answer_text FROM answers")
    try:
        with pytest.raises(psycopg.errors.RaiseException, match=r"view leaky .*security_invoker = true"):
            db.migrate(admin_conn)
        admin_conn.execute("ALTER VIEW leaky SET (security_invoker = true)")
        db.migrate(admin_conn)
        assert conn.execute("SELECT count(*) FROM leaky").fetchone()[0] == 0  # granted, and under RLS
    finally:
        admin_conn.execute("DROP VIEW leaky")


def test_the_worker_role_is_least_privilege(conn, admin_conn):
    worker = conn.execute("SELECT session_user").fetchone()[0]
    assert worker == db.tenant_login("northfield") == f"{db.worker_role()}_northfield"
    attrs = admin_conn.execute("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
                               " WHERE rolname = %s", (worker,)).fetchone()
    assert attrs == (False, False, False, False)
    owners = {r[0] for r in admin_conn.execute(
        "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class WHERE relnamespace = 'public'::regnamespace")}
    assert worker not in owners and not any(
        admin_conn.execute("SELECT pg_has_role(%s, %s, 'USAGE')", (worker, owner)).fetchone()[0] for owner in owners)
    privileges = admin_conn.execute(
        "SELECT has_schema_privilege(%(w)s, 'public', 'CREATE'), has_table_privilege(%(w)s, 'answers', 'TRUNCATE'),"
        " has_table_privilege(%(w)s, 'audit_log', 'UPDATE'), has_table_privilege(%(w)s, 'audit_log', 'DELETE'),"
        " has_table_privilege(%(w)s, 'schema_migrations', 'INSERT')", {"w": worker}).fetchone()
    assert privileges == (False, False, False, False, False)
    global_writes = [(t, p) for t in db.GLOBAL_TABLES for p in ("INSERT", "UPDATE", "DELETE") if admin_conn.execute(
        "SELECT has_table_privilege(%s, %s, %s)", (worker, t, p)).fetchone()[0]]
    assert global_writes == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE sneaky (x int)")


def test_one_institution_reads_none_and_writes_none_of_another(two_nights, admin_conn, tenant_conn, embedded_stack):
    north, lake = two_nights
    tables = _tenant_tables(admin_conn)

    def all_counts():
        return {t: dict(admin_conn.execute(f"SELECT institution_id, count(*) FROM {t} GROUP BY 1").fetchall())
                for t in tables}

    before = all_counts()
    seen_both = {t for t, c in before.items() if c.get("lakeshore") and c.get("northfield")}
    assert seen_both >= NIGHT_TABLES, f"the fixture left no rows of both in {sorted(NIGHT_TABLES - seen_both)}"
    for table in tables:
        for mine, other, c in (("northfield", "lakeshore", north), ("lakeshore", "northfield", lake)):
            visible = dict(c.execute(f"SELECT institution_id, count(*) FROM {table} GROUP BY 1").fetchall())
            assert visible.get(other, 0) == 0, f"{mine} reads {other}'s rows of {table}"
            assert visible.get(mine, 0) == before[table].get(mine, 0), f"{mine} misses its own rows of {table}"
            update = f"UPDATE {table} SET institution_id = institution_id WHERE institution_id = %s"
            if table == "audit_log":  # append-only for the worker, whoever's rows
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(update, (other,))
            else:
                assert c.execute(update, (other,)).rowcount == 0, f"{mine} changed {other}'s {table}"
            with pytest.raises(psycopg.errors.InsufficientPrivilege):  # no DELETE at all (019: it allows LOCK TABLE)
                c.execute(f"DELETE FROM {table} WHERE institution_id = %s", (other,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), c.transaction():
                c.execute(f"INSERT INTO {table} (institution_id) VALUES (%s)", (other,))
    assert all_counts() == before
    # Moving one's own row to another institution is refused too (WITH CHECK).
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), north.transaction():
        north.execute("UPDATE rejected_rows SET institution_id = 'lakeshore'")
    # The code refuses to use a bound connection for another institution, before PostgreSQL has to.
    with pytest.raises(db.TenantMismatch, match="bound to institution 'northfield'"):
        publish.day_counts(north, LAKE, EXAM_DAY)
    # A login that is no institution's (here: the worker group's grants, taken by another session user)
    # sees nothing at all.
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        su.execute(f"SET ROLE {db.worker_role()}")
        assert all(su.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0 for t in tables)


def test_an_institutions_read_only_role_reads_only_its_releases(two_nights, embedded_stack):
    reader = db.reader_role("northfield")
    with stack.connect_as(embedded_stack, stack.PG_USER, autocommit=True) as su:
        attrs = su.execute("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
                           (reader,)).fetchone()
        assert attrs == (False, False, False)  # a group role: the institution's analysts' logins are granted it
        su.execute(f"SET ROLE {reader}")
        # An analyst can change this setting: it must not matter for the read-only role.
        su.execute("SELECT set_config('gradeflow.institution', 'lakeshore', false)")
        for table in db.RELEASE_TABLES + db.RELEASE_VIEWS:  # the views show exported releases only
            rows = dict(su.execute(f"SELECT institution_id, count(*) FROM {table} GROUP BY 1").fetchall())
            assert set(rows) == {"northfield"} and rows["northfield"] > 0
        students = {r[0] for r in su.execute("SELECT DISTINCT student_id FROM release_results")}
        assert students == {"st1", "st2"}
        for statement in ("SELECT count(*) FROM answers", "SELECT count(*) FROM grades",
                          "DELETE FROM releases", "UPDATE release_results SET score = 0"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                su.execute(statement)
        su.execute("RESET ROLE")


def test_a_task_fails_clearly_when_the_schema_is_not_migrated(embedded_stack, monkeypatch):
    import json
    import os

    with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        su.execute("DROP DATABASE IF EXISTS gradeflow_unmigrated")
        su.execute(f"CREATE DATABASE gradeflow_unmigrated OWNER {stack.OWNER_ROLE}")
    try:
        conn_json = json.loads(os.environ["AIRFLOW_CONN_GRADEFLOW_DB_NORTHFIELD"])
        monkeypatch.setenv("AIRFLOW_CONN_GRADEFLOW_DB_NORTHFIELD",
                           json.dumps({**conn_json, "schema": "gradeflow_unmigrated"}))
        monkeypatch.setattr(tasks, "_SCHEMA_CHECKED", set())
        with pytest.raises(db.SchemaNotMigrated, match=r"missing 001_schema.*python -m gradeflow.core.db migrate"):
            tasks.order_submissions("northfield", params={"exam_day": DAY})
    finally:
        with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
            su.execute("DROP DATABASE gradeflow_unmigrated WITH (FORCE)")
