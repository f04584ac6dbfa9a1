"""An existing database from before the per-institution logins (migration 016) upgrades to head.

A `.devstack` state folder, or a production database, made by an older commit holds migrations 001-015,
applied by the old migrate step (one shared worker role bound by a session setting). Migrations are
append-only, so the files 001-015 of this tree are the ones that older commit applied; the old step's
procedure is replayed below. The upgrade must keep every row, the new logins must then work on it (their
own rows only, references checked, no table lock over the others), and a second migrate must change nothing.
"""

from __future__ import annotations

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db
from gradeflow.core.config import load_institutions

OLD_DB = "gradeflow_upgrade"
DAY = "2026-01-05"
TABLES = ("institutions", "ingested_files", "exams", "questions", "submissions", "answers", "batch_jobs",
          "provider_enqueued", "review_reasons")


def _migrate_as_before_016(conn: psycopg.Connection) -> None:
    """What `migrate` did at the commit before 016: apply 001-015, seed, then 003's isolation for the worker."""
    worker = db.worker_role()
    with conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                     " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        for path in sorted(db.MIGRATIONS_DIR.glob("*.sql")):
            if path.stem >= "016":
                break
            conn.execute(path.read_text())
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
        for inst in load_institutions():
            db.execute(conn, "upsert_institution", {"id": inst.id, "name": inst.name, "tz": inst.timezone,
                                                    "prefix": inst.s3_prefix, "model": inst.model})
        db._sync_review_reasons(conn)
        conn.execute("SELECT gradeflow_enforce_isolation(%s)", (worker,))
        conn.execute(f"GRANT EXECUTE ON FUNCTION gradeflow_analyse(text) TO {worker}")


def _rows_of_a_day(conn: psycopg.Connection, institution: str) -> int:
    """A loaded file, its exam, question, submission and answer, and a batch job with a reservation."""
    file_id = conn.execute(
        "INSERT INTO ingested_files (institution_id, exam_day, s3_key, file_name, kind, sha256, size_bytes, status)"
        " VALUES (%s, %s, 'incoming/x/a.csv', 'a.csv', 'submissions', 'sha', 10, 'loaded') RETURNING file_id",
        (institution, DAY)).fetchone()[0]
    conn.execute("INSERT INTO exams (institution_id, exam_id, exam_day, title, definition_sha256, source_file_id)"
                 " VALUES (%s, 'bio-101', %s, 'Biology', 'sha', %s)", (institution, DAY, file_id))
    conn.execute("INSERT INTO questions (institution_id, exam_id, question_id, position, qtype, max_points)"
                 " VALUES (%s, 'bio-101', 'q1', 1, 'short_answer', 2)", (institution,))
    conn.execute("INSERT INTO submissions (institution_id, submission_id, exam_id, student_id, exam_day, submitted_at,"
                 " source_file_id) VALUES (%s, 's1', 'bio-101', 'st1', %s, now(), %s)", (institution, DAY, file_id))
    conn.execute("INSERT INTO answers (institution_id, submission_id, question_id, exam_id, exam_day, answer_text,"
                 " answer_sha256, source_file_id, source_row) VALUES (%s, 's1', 'q1', 'bio-101', %s, 'x', 'h', %s, 1)",
                 (institution, DAY, file_id))
    job = conn.execute("INSERT INTO batch_jobs (institution_id, exam_day, night, fingerprint, model, input_key,"
                       " request_count, est_input_tokens) VALUES (%s, %s, %s, %s, 'gpt-4.1-mini', 'k', 1, 10)"
                       " RETURNING job_id", (institution, DAY, DAY, f"fp-{institution}")).fetchone()[0]
    conn.execute("INSERT INTO provider_enqueued (job_id, tenant, model, tokens) VALUES (%s, %s, 'gpt-4.1-mini', 10)",
                 (job, institution))
    return job


def _counts(conn: psycopg.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture
def old_database(embedded_stack):
    with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        su.execute(f"DROP DATABASE IF EXISTS {OLD_DB} WITH (FORCE)")
        su.execute(f"CREATE DATABASE {OLD_DB} OWNER {stack.OWNER_ROLE}")
        su.execute(f"REVOKE ALL ON DATABASE {OLD_DB} FROM PUBLIC")
    yield OLD_DB
    with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        su.execute(f"DROP DATABASE IF EXISTS {OLD_DB} WITH (FORCE)")


def test_a_database_from_before_016_upgrades_with_its_rows_and_the_logins_work(embedded_stack, old_database):
    with stack.connect_as(embedded_stack, stack.OWNER_ROLE, dbname=old_database, autocommit=True) as owner:
        _migrate_as_before_016(owner)
        jobs = {inst: _rows_of_a_day(owner, inst) for inst in ("northfield", "lakeshore")}
        before = _counts(owner)
        applied = db.migrate(owner)
        assert applied[0] == "016_tenant_roles" and applied[-1] == sorted(db.MIGRATIONS_DIR.glob("*.sql"))[-1].stem
        assert db.migrate(owner) == []  # a second run changes nothing
        assert _counts(owner) == before
    login = db.tenant_login("northfield")
    with psycopg.connect(host="127.0.0.1", port=embedded_stack.pg_port, dbname=old_database, user=login,
                         password=stack._secrets(embedded_stack.state_dir)[login], autocommit=True) as north:
        for table in ("ingested_files", "exams", "questions", "submissions", "answers", "batch_jobs"):
            seen = dict(north.execute(f"SELECT institution_id, count(*) FROM {table} GROUP BY 1").fetchall())
            assert seen == {"northfield": 1}, (table, seen)
        file_id = north.execute("SELECT file_id FROM ingested_files").fetchone()[0]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the references hold on the old rows
            north.execute("INSERT INTO answers (institution_id, submission_id, question_id, exam_id, exam_day,"
                          " answer_text, answer_sha256, source_file_id, source_row)"
                          " VALUES ('northfield', 'ghost', 'q1', 'bio-101', %s, 'x', 'h', %s, 2)", (DAY, file_id))
        with pytest.raises(psycopg.errors.InsufficientPrivilege), north.transaction():
            north.execute("LOCK TABLE answers IN ACCESS EXCLUSIVE MODE NOWAIT")
        reserve = "SELECT reserved FROM gradeflow_reserve_enqueued(%s, %s, 'gpt-4.1-mini', 5, 10000, 10000)"
        assert north.execute(reserve, (jobs["northfield"], "northfield")).fetchone()[0] is True
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only"):
            north.execute(reserve, (jobs["lakeshore"], "lakeshore"))


def test_a_state_folder_from_before_016_gets_its_logins_and_loses_the_shared_one(embedded_stack, tmp_path):
    """What `stack up` does to an older `.devstack` folder besides the migrate step: secrets.json keeps its
    passwords and gains one per institution's login; the old shared worker login becomes a NOLOGIN group."""
    import json
    import stat

    old = {stack.PG_USER: "pg-old", stack.OWNER_ROLE: "owner-old", stack.AIRFLOW_ROLE: "airflow-old",
           stack.WORKER_ROLE: "worker-old"}
    (tmp_path / "secrets.json").write_text(json.dumps(old))
    values = stack._secrets(tmp_path)
    assert {k: values[k] for k in old} == old
    logins = [db.tenant_login(inst.id) for inst in load_institutions()]
    assert all(len(values[login]) >= 24 for login in logins)
    assert json.loads((tmp_path / "secrets.json").read_text()) == values
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    # The running stack's group role as an older folder had it: a login with a password.
    with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        su.execute(f"ALTER ROLE {stack.WORKER_ROLE} LOGIN PASSWORD 'worker-old'")
    stack._bootstrap_roles(embedded_stack)
    with stack.connect_as(embedded_stack, stack.PG_USER, dbname="postgres", autocommit=True) as su:
        assert su.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                          (stack.WORKER_ROLE,)).fetchone()[0] is False
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=embedded_stack.pg_port, dbname=stack.GRADEFLOW_DB,
                        user=stack.WORKER_ROLE, password="worker-old").close()
