"""docker/init-gradeflow-db.sh on a fresh PostgreSQL, as the postgres image runs it (without Docker)."""

from __future__ import annotations

import os
import secrets
import subprocess

import psycopg
import pytest

from devstack import stack
from gradeflow.core import db


@pytest.fixture
def fresh_postgres():
    """A bare PostgreSQL 16 (what the postgres image starts with): only the superuser."""
    import shutil
    import tempfile
    from pathlib import Path

    from pgserver._commands import POSTGRES_BIN_PATH

    folder, port = Path(tempfile.mkdtemp(prefix="gradeflow-initdb-")), stack._free_port()  # not in pytest's basetemp
    try:
        stack._start_postgres(folder / "pgdata", port)
        yield folder / "pgdata", port, POSTGRES_BIN_PATH
    finally:
        stack.down(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_init_script_creates_least_privilege_roles_from_the_environment(fresh_postgres, project_root):
    pg_data, port, bin_path = fresh_postgres
    script = str(project_root / "docker" / "init-gradeflow-db.sh")
    env = {**os.environ, "PATH": f"{bin_path}{os.pathsep}{os.environ['PATH']}", "PGHOST": str(pg_data),
           "PGPORT": str(port), "POSTGRES_USER": "postgres", "POSTGRES_DB": "postgres",
           "GRADEFLOW_DB_OWNER_PASSWORD": "change-me-owner", "GRADEFLOW_DB_WORKER_PASSWORD": "change-me-worker"}
    refused = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "GRADEFLOW_DB_OWNER_PASSWORD" in refused.stderr

    passwords = {"gradeflow_owner": secrets.token_urlsafe(16), "gradeflow_worker": secrets.token_urlsafe(16)}
    env.update(GRADEFLOW_DB_OWNER_PASSWORD=passwords["gradeflow_owner"],
               GRADEFLOW_DB_WORKER_PASSWORD=passwords["gradeflow_worker"])
    subprocess.run(["bash", script], env=env, check=True, capture_output=True)

    def login(role):
        return psycopg.connect(host="127.0.0.1", port=port, user=role, password=passwords[role], dbname="gradeflow",
                               autocommit=True)

    with login("gradeflow_owner") as owner:
        db.migrate(owner)  # what airflow-init runs, as the owner
        attrs = owner.execute("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname LIKE 'gradeflow%'"
                              " ORDER BY 1").fetchall()
    assert ("gradeflow_owner", False, False) in attrs and ("gradeflow_worker", False, False) in attrs
    assert ("gradeflow_ro_northfield", False, False) in attrs
    with login("gradeflow_worker") as worker:
        assert worker.execute("SELECT count(*) FROM institutions").fetchone()[0] == 0
        worker.execute("SELECT set_config('gradeflow.institution', 'northfield', false)")
        assert worker.execute("SELECT institution_id FROM institutions").fetchall() == [("northfield",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=port, user="gradeflow_worker", password="change-me-worker",
                        dbname="gradeflow")
