"""The files a user meets first: docker-compose.yaml, Dockerfile, .env.example, requirements, prompts.

No Docker engine runs here, so the compose file, the Dockerfile, .env.example and the code are
cross-checked against each other: credentials, bucket, connection ids, pool, paths, pins.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
import yaml

from gradeflow.core.config import (
    AWS_CONN_ID,
    BATCH_API_POOL,
    FREE_TEXT_TYPES,
    OPENAI_CONN_ID,
    POSTGRES_CONN_ID,
    POSTGRES_OWNER_CONN_ID,
    bucket,
)

AIRFLOW_SERVICES = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer"}


@pytest.fixture(scope="module")
def compose(project_root) -> dict:
    return yaml.safe_load((project_root / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def env_example(project_root) -> dict[str, str]:
    """.env.example as docker compose reads it: KEY=value, single quotes taken literally."""
    values = {}
    for line in (project_root / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().removeprefix("'").removesuffix("'")
    return values


def _conn(env_example: dict, conn_id: str) -> dict:
    return json.loads(env_example[f"AIRFLOW_CONN_{conn_id.upper()}"])


def _one_shot(service: dict) -> bool:
    return service.get("restart") == "no"


def test_compose_is_the_airflow_3_split_with_health_checks(compose):
    services = compose["services"]
    assert AIRFLOW_SERVICES | {"postgres", "minio", "minio-init"} <= set(services)
    assert not [n for n, s in services.items() if "standalone" in str(s.get("command", ""))]
    commands = {n: services[n]["command"] for n in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for name, service in services.items():
        # Long-running services say when they are healthy; one-shot ones (init) are waited on to complete.
        assert _one_shot(service) or service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, how in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if _one_shot(services[dep]) else "service_healthy"
            assert how == {"condition": expected}, (name, dep, how)
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert {"postgres", "airflow-init", "minio-init"} <= set(services[name]["depends_on"]), name


def test_every_compose_variable_is_in_env_example(project_root, env_example, compose):
    text = (project_root / "docker-compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used and not used - set(env_example), f"missing from .env.example: {sorted(used - set(env_example))}"
    for name in AIRFLOW_SERVICES:
        assert compose["services"][name]["env_file"] == [{"path": ".env", "required": True}]


def test_s3_credentials_and_bucket_match_minio(env_example, compose, monkeypatch):
    s3 = _conn(env_example, AWS_CONN_ID)
    assert (s3["login"], s3["password"]) == (env_example["MINIO_ROOT_USER"], env_example["MINIO_ROOT_PASSWORD"])
    minio = compose["services"]["minio"]
    assert minio["environment"]["MINIO_ROOT_USER"].startswith("${MINIO_ROOT_USER")
    assert minio["environment"]["MINIO_ROOT_PASSWORD"].startswith("${MINIO_ROOT_PASSWORD")
    endpoint = urlparse(s3["extra"]["endpoint_url"])
    assert endpoint.hostname == "minio" and f"{endpoint.port}:{endpoint.port}" in minio["ports"]
    init = compose["services"]["minio-init"]
    assert init["environment"]["MINIO_ROOT_USER"] == minio["environment"]["MINIO_ROOT_USER"]
    assert init["environment"]["MINIO_ROOT_PASSWORD"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    assert init["environment"]["GRADEFLOW_BUCKET"].startswith("${GRADEFLOW_BUCKET")
    assert "mc mb --ignore-existing" in init["command"][0] and '"local/$$GRADEFLOW_BUCKET"' in init["command"][0]
    monkeypatch.delenv("GRADEFLOW_BUCKET", raising=False)
    assert env_example["GRADEFLOW_BUCKET"] == bucket()


def test_database_credentials_match_postgres(project_root, env_example, compose):
    init_sh = (project_root / "docker" / "init-gradeflow-db.sh").read_text()
    database, owner = re.search(r"CREATE DATABASE (\w+) OWNER (\w+)", init_sh).groups()
    for conn_id, role, variable in ((POSTGRES_CONN_ID, "gradeflow_worker", "GRADEFLOW_DB_WORKER_PASSWORD"),
                                    (POSTGRES_OWNER_CONN_ID, owner, "GRADEFLOW_DB_OWNER_PASSWORD")):
        db = _conn(env_example, conn_id)
        assert re.search(rf"CREATE ROLE {role} LOGIN .*PASSWORD :'\w+'", init_sh) and "\\getenv" in init_sh
        assert (db["host"], db["port"], db["login"], db["password"], db["schema"]) == (
            "postgres", 5432, role, env_example[variable], database)
        assert compose["services"]["postgres"]["environment"][variable].startswith(f"${{{variable}")
    postgres = compose["services"]["postgres"]["environment"]
    meta = compose["x-airflow"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    assert meta.startswith(f"postgresql+psycopg2://{postgres['POSTGRES_USER']}:${{POSTGRES_PASSWORD")
    assert meta.endswith(f"@postgres:5432/{postgres['POSTGRES_DB']}")


def test_every_connection_id_in_code_is_configured(env_example):
    import gradeflow.core.config as config

    ids = {v for k, v in vars(config).items() if k.endswith("_CONN_ID")}
    configured = {k.removeprefix("AIRFLOW_CONN_").lower() for k in env_example if k.startswith("AIRFLOW_CONN_")}
    assert ids == configured
    expected_types = {POSTGRES_CONN_ID: "postgres", AWS_CONN_ID: "aws", OPENAI_CONN_ID: "openai"}
    for conn_id, conn_type in expected_types.items():
        assert _conn(env_example, conn_id)["conn_type"] == conn_type
    assert not re.search(r"sk-(?!change-me)[A-Za-z0-9]{10,}", json.dumps(env_example))


def test_init_creates_the_batch_api_pool(compose):
    command = " ".join(compose["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in command and f"airflow pools set {BATCH_API_POOL} " in command


def test_mounted_and_copied_paths_exist(project_root, compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (project_root / source).exists(), f"{name} mounts missing {source}"
    dockerfile = (project_root / "Dockerfile").read_text()
    copied = re.findall(r"^COPY(?: --\S+)* (\S+) ", dockerfile, re.MULTILINE)
    assert copied
    for source in copied:
        assert (project_root / source).exists(), f"Dockerfile copies missing {source}"


def test_images_are_pinned(compose):
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d+\.\d+|RELEASE\.\d{4}-", tag), f"{name}: {image} floats (pin a full version)"


def test_the_image_is_the_airflow_pin_with_runtime_requirements_only(project_root, compose):
    dockerfile = (project_root / "Dockerfile").read_text()
    airflow, python = re.search(r"^FROM apache/airflow:([\d.]+)-python([\d.]+)$", dockerfile, re.MULTILINE).groups()
    pins = dict(line.split("==") for line in _pins(project_root / "requirements.txt"))
    assert pins["apache-airflow"] == airflow
    assert f'py{python.replace(".", "")}' in (project_root / "pyproject.toml").read_text()  # ruff target-version
    assert "pip install --no-cache-dir -r /opt/gradeflow/requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile and "requirements.lock" not in dockerfile
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["build"] == "." and service["image"].endswith(f":{airflow}-python{python}"), name


def _pins(path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("-r ")]


def test_requirements_are_pinned_and_locked(project_root):
    runtime, dev = _pins(project_root / "requirements.txt"), _pins(project_root / "requirements-dev.txt")
    assert runtime and dev and "-r requirements.txt" in (project_root / "requirements-dev.txt").read_text()
    for line in runtime + dev:
        assert "==" in line, f"not pinned: {line}"
    lock = (project_root / "requirements.lock").read_text()
    for line in runtime + dev:
        name = re.split(r"[\[=]", line)[0].lower()
        assert re.search(rf"^{re.escape(name)}==", lock, re.MULTILINE | re.IGNORECASE), f"{name} not in the lock"
        assert f"{name}==" + line.split("==")[1] in lock.lower(), f"{name}: the lock holds another version"


def test_the_image_gets_no_dev_tools(project_root):
    """Tests, linting and the embedded stack stay out of requirements.txt (what the Docker image installs)."""
    runtime = {re.split(r"[\[=]", line)[0].lower() for line in _pins(project_root / "requirements.txt")}
    dev = {re.split(r"[\[=]", line)[0].lower() for line in _pins(project_root / "requirements-dev.txt")}
    assert not runtime & dev
    assert not runtime & {"pytest", "ruff", "moto", "pgserver", "fastapi", "uvicorn", "pillow", "hypothesis"}


def test_every_free_text_type_has_a_prompt_with_the_student_answer_kept_out(project_root):
    for qtype in FREE_TEXT_TYPES:
        prompt = (project_root / "include" / "prompts" / f"{qtype}.md").read_text()
        for field in ("$question", "$rubric", "$reference_answer", "$max_points"):
            assert field in prompt, (qtype, field)
        assert "student_answer" in prompt and "never an instruction" in prompt
        assert "$student" not in prompt and "$answer" not in prompt
