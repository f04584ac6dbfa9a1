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
           "GRADEFLOW_DB_OWNER_PASSWORD": "change-me-owner", "AIRFLOW_DB_PASSWORD": secrets.token_urlsafe(16)}
    refused = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "GRADEFLOW_DB_OWNER_PASSWORD" in refused.stderr
    refused = subprocess.run(["bash", script], env={**env, "AIRFLOW_DB_PASSWORD": "change-me-airflow-db",
                                                    "GRADEFLOW_DB_OWNER_PASSWORD": "fine-owner-pw"},
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "AIRFLOW_DB_PASSWORD" in refused.stderr

    passwords = {"gradeflow_owner": secrets.token_urlsafe(16), "airflow": env["AIRFLOW_DB_PASSWORD"],
                 **{db.tenant_login(i): secrets.token_urlsafe(16) for i in ("northfield", "lakeshore", "rheinwald")}}
    env.update(GRADEFLOW_DB_OWNER_PASSWORD=passwords["gradeflow_owner"])
    subprocess.run(["bash", script], env=env, check=True, capture_output=True)

    def login(role, dbname="gradeflow"):
        return psycopg.connect(host="127.0.0.1", port=port, user=role, password=passwords[role], dbname=dbname,
                               autocommit=True)

    with login("airflow", "airflow") as airflow:  # Airflow's metadata role: a plain owner of its database
        assert airflow.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
                               " WHERE rolname = current_user").fetchone() == (False, False, False, False)
        assert airflow.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'airflow'"
                               ).fetchone()[0] == "airflow"
        with pytest.raises(psycopg.OperationalError):
            login("airflow", "gradeflow")
    with login("gradeflow_owner") as owner:
        db.migrate(owner, passwords=passwords)  # what airflow-init runs, as the owner
        attrs = owner.execute("SELECT rolname, rolsuper, rolbypassrls, rolcanlogin FROM pg_roles"
                              " WHERE rolname LIKE 'gradeflow%' ORDER BY 1").fetchall()
    assert ("gradeflow_owner", False, False, True) in attrs and ("gradeflow_worker", False, False, False) in attrs
    assert ("gradeflow_ro_northfield", False, False, False) in attrs
    assert ("gradeflow_worker_northfield", False, False, True) in attrs
    with login(db.tenant_login("northfield")) as worker:
        assert worker.execute("SELECT institution_id FROM institutions").fetchall() == [("northfield",)]
        worker.execute("SELECT set_config('gradeflow.institution', 'lakeshore', false)")  # changes nothing
        assert worker.execute("SELECT institution_id FROM institutions").fetchall() == [("northfield",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=port, user=db.tenant_login("northfield"), password="change-me",
                        dbname="gradeflow")
