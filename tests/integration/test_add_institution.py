"""docs/add-an-institution.md, followed for a fourth institution: the documented commands are run as written
(for the embedded stack), and a task of the new institution before the migrate step says what to do."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from gradeflow.core import db

pytestmark = pytest.mark.heavy(seconds=15)  # a pytest and a migrate in child processes
DOC = "docs/add-an-institution.md"
FOURTH = """
  - id: harbour
    s3_prefix: harbour
    name: Harbour Polytechnic
    timezone: Pacific/Auckland
    alert_emails: [results@harbour.example.nz]
"""


def _commands(project_root) -> list[str]:
    text = (project_root / DOC).read_text()
    checklist = text[text.index("## Checklist"):]
    blocks = re.findall(r"```sh\n(.*?)```", checklist, flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


@pytest.fixture
def fourth_institution(project_root, tmp_path, admin_conn, embedded_stack):
    path = tmp_path / "institutions.yaml"
    path.write_text((project_root / "include" / "institutions.yaml").read_text().rstrip() + "\n" + FOURTH)
    yield path
    # The test database is shared by the session: take the fourth institution out again.
    admin_conn.execute("DELETE FROM gradeflow_tenant_roles WHERE institution = 'harbour'")
    admin_conn.execute("DELETE FROM institutions WHERE institution_id = 'harbour'")
    role = db.reader_role("harbour")
    if admin_conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
        for name, table in admin_conn.execute("SELECT policyname, tablename FROM pg_policies "
                                              "WHERE %s = ANY(roles)", (role,)).fetchall():
            admin_conn.execute(f'DROP POLICY "{name}" ON {table}')
        database = admin_conn.execute("SELECT current_database()").fetchone()[0]
        admin_conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
        admin_conn.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        admin_conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM {role}')
        admin_conn.execute(f"DROP ROLE {role}")
    login = db.tenant_login("harbour")
    if admin_conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
        from devstack import stack

        database = admin_conn.execute("SELECT current_database()").fetchone()[0]
        with stack._socket_connect(embedded_stack, database) as superuser:  # the login's grants came from several
            superuser.execute(f"DROP OWNED BY {login}")
            superuser.execute(f"DROP ROLE {login}")


def test_every_documented_command_of_the_checklist_runs(project_root, embedded_stack, conn, fourth_institution,
                                                        monkeypatch):
    from devstack import stack
    from gradeflow.airflow import tasks

    commands = _commands(project_root)
    assert commands == [
        '.venv/bin/python -m pytest -q tests/unit/test_dag_integrity.py -k "four_dags or no_import_errors"',
        "make migrate", "python -m gradeflow.core.db migrate", "docker compose run --rm airflow-init"]
    env = {**os.environ, "GRADEFLOW_INSTITUTIONS": str(fourth_institution),
           "PYTHONPATH": os.pathsep.join([str(project_root / "plugins"), str(project_root)])}

    # Step 1: the check parses the edited file: four DAGs for the fourth institution too.
    check = shlex.split(commands[0].replace(".venv/bin/python", sys.executable, 1))
    done = subprocess.run(check, cwd=project_root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout

    # Before step 2, a task of the new institution stops at once and names the command.
    with pytest.raises(db.InstitutionNotRegistered, match=r"python -m gradeflow.core.db migrate.*make migrate"):
        tasks.open_db("harbour")

    # Step 2 on the embedded stack: `make migrate` is the stack's migrate command (here on the test's stack).
    makefile = (project_root / "Makefile").read_text()
    assert re.search(r"^migrate: venv\n\t\$\(PY\) -m devstack.stack migrate$", makefile, flags=re.M)
    migrate = [sys.executable, "-m", "devstack.stack", "migrate", "--state-dir", str(embedded_stack.state_dir)]
    done = subprocess.run(migrate, cwd=project_root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "institutions registered from" in done.stdout
    # `python -m gradeflow.core.db migrate` is the same step through the owner's Airflow connection, which
    # only production configures; `docker compose run --rm airflow-init` runs it in compose (its command is
    # checked by tests/unit/test_project_files.py).
    compose = (project_root / "docker-compose.yaml").read_text()
    assert "python -m gradeflow.core.db migrate" in compose

    # Registered: the institution's tasks can work once they see its connection (a restarted `make airflow`
    # computes the stack's environment again, the new login's connection included).
    from gradeflow.core import config

    monkeypatch.setattr(config, "INSTITUTIONS_FILE", fourth_institution)
    for key, value in stack.env(embedded_stack).items():
        if key.startswith("AIRFLOW_CONN_GRADEFLOW_DB_"):
            monkeypatch.setenv(key, value)
    with tasks.open_db("harbour") as registered:
        assert registered.execute("SELECT name FROM institutions").fetchone()[0] == "Harbour Polytechnic"


def test_a_long_running_process_rereads_the_edited_file(tmp_path, project_root):
    """Workers and the triggerer (deadline-alert callbacks) read the file again once it changed: no restart."""
    import time

    from gradeflow.core.config import load_institutions

    path = tmp_path / "institutions.yaml"
    path.write_text((project_root / "include" / "institutions.yaml").read_text())
    before = {i.id for i in load_institutions(path)}
    time.sleep(0.01)
    path.write_text(path.read_text().rstrip() + "\n" + FOURTH)
    assert {i.id for i in load_institutions(path)} == before | {"harbour"}
