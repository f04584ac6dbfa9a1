"""Database configuration a user meets: .env.example, the docker init script, connection settings."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from gradeflow.core import db


def _env_example(project_root, name: str = ".env.example") -> dict[str, str]:
    values = {}
    for line in (project_root / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip("'")
    return values


def test_env_example_db_connections_match_the_init_script_passwords(project_root):
    from gradeflow.core.config import load_institutions

    env = _env_example(project_root)
    owner = json.loads(_env_example(project_root, ".env.owner.example")["AIRFLOW_CONN_GRADEFLOW_DB_OWNER"])
    assert (owner["login"], owner["password"]) == ("gradeflow_owner", env["GRADEFLOW_DB_OWNER_PASSWORD"])
    for inst in load_institutions():
        worker = json.loads(env[f"AIRFLOW_CONN_{db.tenant_conn_id(inst.id).upper()}"])
        assert worker["login"] == db.tenant_login(inst.id) and worker["schema"] == owner["schema"] == "gradeflow"
    for name, _, default in db.SESSION_SETTINGS[:4]:
        assert env[dict((n, e) for n, e, _ in db.SESSION_SETTINGS)[name]] == default


def test_no_committed_file_holds_a_database_password(project_root):
    files = subprocess.run(["git", "ls-files"], cwd=project_root, capture_output=True, text=True,
                           check=True).stdout.split()
    literal = re.compile(r"PASSWORD\s+'(?!<)[^']+'", re.IGNORECASE)
    offenders = [f for f in files if f.endswith((".sql", ".sh", ".yaml", ".yml", ".py", ".md"))
                 and not f.startswith("tests/") and literal.search((project_root / f).read_text())]
    assert offenders == []


def test_compose_runs_the_init_script_with_passwords_from_env_and_migrates(project_root):
    compose = yaml.safe_load((project_root / "docker-compose.yaml").read_text())
    postgres = compose["services"]["postgres"]
    assert "./docker/init-gradeflow-db.sh:/docker-entrypoint-initdb.d/10-gradeflow.sh:ro" in postgres["volumes"]
    assert {"GRADEFLOW_DB_OWNER_PASSWORD", "AIRFLOW_DB_PASSWORD"} <= set(postgres["environment"])
    command = compose["services"]["airflow-init"]["command"]
    assert "python -m gradeflow.core.db migrate" in (command if isinstance(command, str) else " ".join(command))


def test_durations_and_application_name(monkeypatch):
    assert [db._seconds(v) for v in ("30s", "500ms", "5min", "1h", "250", "0")] == [30, 0.5, 300, 3600, 0.25, 0]
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "a_very_long_institution_identifier_x__publish")
    monkeypatch.setenv("AIRFLOW_CTX_TASK_ID", "publish_release_with_a_long_name")
    name = db.application_name("a_very_long_institution_identifier_x")
    assert name.startswith("gradeflow/a_very_long_institution_identifier_x/") and len(name.encode()) <= 63
