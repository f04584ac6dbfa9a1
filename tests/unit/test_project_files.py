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
                    "airflow-triggerer", "airflow-worker", "flower"}
CELERY_PROFILE = {"redis": ["celery"], "airflow-worker": ["celery"], "flower": ["flower"]}


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
    assert AIRFLOW_SERVICES | {"preflight", "postgres", "minio", "minio-init"} <= set(services)
    assert not [n for n, s in services.items() if "standalone" in str(s.get("command", ""))]
    commands = {n: services[n]["command"] for n in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
                        "airflow-worker": "celery worker --queues default", "flower": "celery flower"}
    for name, service in services.items():
        # Long-running services say when they are healthy; one-shot ones (init) are waited on to complete.
        assert _one_shot(service) or service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dep, how in (service.get("depends_on") or {}).items():
            expected = "service_completed_successfully" if _one_shot(services[dep]) else "service_healthy"
            # An always-on service waits on a profile's service only when that runs (required: false).
            optional = bool(services[dep].get("profiles")) and not service.get("profiles")
            assert how == {"condition": expected, **({"required": False} if optional else {})}, (name, dep, how)
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert {"postgres", "airflow-init", "minio-init"} <= set(services[name]["depends_on"]), name


def test_every_compose_variable_is_in_env_example(project_root, env_example, compose):
    text = (project_root / "docker-compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used and not used - set(env_example), f"missing from .env.example: {sorted(used - set(env_example))}"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert compose["services"][name]["env_file"] == [{"path": ".env", "required": True}]


def _owner_example(project_root) -> dict[str, str]:
    values = {}
    for line in (project_root / ".env.owner.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().removeprefix("'").removesuffix("'")
    return values


def _service_env(compose, name: str) -> str:
    """Everything a service is given: its environment (with the x-airflow anchor merged) and env files."""
    service = compose["services"][name]
    return json.dumps({"environment": service.get("environment"), "env_file": service.get("env_file")})


def test_the_owner_connection_and_superuser_credentials_reach_only_init_services(project_root, compose):
    owner = _owner_example(project_root)
    assert set(owner) == {f"AIRFLOW_CONN_{POSTGRES_OWNER_CONN_ID.upper()}"}
    with_owner = {n for n in compose["services"] if ".env.owner" in _service_env(compose, n)}
    assert with_owner == {"preflight", "airflow-init"}
    superuser = {n for n in compose["services"] if "POSTGRES_SUPERUSER_PASSWORD" in _service_env(compose, n)}
    assert superuser == {"postgres"}
    minio_root = {n for n in compose["services"] if "MINIO_ROOT_PASSWORD" in _service_env(compose, n)}
    assert minio_root == {"minio", "minio-init"}
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_USER"] != "airflow"  # the metadata role is no superuser
    meta = compose["x-airflow"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert meta == "postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}" \
                   "@postgres:5432/airflow"
    init_sh = (project_root / "docker" / "init-gradeflow-db.sh").read_text()
    assert re.search(r"CREATE ROLE airflow LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS", init_sh)
    assert "CREATE DATABASE airflow OWNER airflow;" in init_sh
    assert "CREATE ROLE gradeflow_worker NOLOGIN" in init_sh
    assert "GRANT gradeflow_worker TO gradeflow_owner WITH ADMIN OPTION;" in init_sh


def test_the_celery_profile_is_airflows_own_shape_with_our_credentials(project_root, env_example, compose):
    """As Airflow's docker-compose for CeleryExecutor: redis, airflow-worker (`celery worker`), flower optional;
    behind profiles, so the default stays LocalExecutor; the broker has a password and is not published."""
    services, common = compose["services"], compose["x-airflow"]["environment"]
    assert {n: s.get("profiles") for n, s in services.items() if s.get("profiles")} == CELERY_PROFILE
    assert common["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert env_example["AIRFLOW_EXECUTOR"] == "LocalExecutor" and env_example["COMPOSE_PROFILES"] == ""
    assert common["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    broker = urlparse(re.sub(r"\$\{[^}]*\}", "pw", common["AIRFLOW__CELERY__BROKER_URL"]))
    assert (broker.scheme, broker.hostname, broker.port, broker.username, broker.path) == (
        "redis", "redis", 6379, "", "/0")
    backend = common["AIRFLOW__CELERY__RESULT_BACKEND"]  # Airflow's metadata login, never the superuser
    assert backend.startswith("db+postgresql://airflow:${AIRFLOW_DB_PASSWORD:?") and backend.endswith("/airflow")
    redis = services["redis"]
    assert "ports" not in redis and redis["expose"] == ["6379"]
    assert '--requirepass "$$REDIS_PASSWORD"' in redis["command"][-1]  # from its environment, not the file
    assert redis["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD:?")
    with_redis = {n for n in services if "REDIS_PASSWORD" in _service_env(compose, n)}
    assert with_redis == {"redis"} | (AIRFLOW_SERVICES - {"flower"}) | {"flower"}
    worker = services["airflow-worker"]
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0" and "inspect ping" in worker["healthcheck"]["test"][-1]
    assert {"redis", "airflow-apiserver", "postgres", "airflow-init", "minio-init"} <= set(worker["depends_on"])
    assert services["airflow-scheduler"]["depends_on"]["redis"] == {"condition": "service_healthy",
                                                                    "required": False}
    flower = services["flower"]
    assert flower["environment"]["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["${GRADEFLOW_BIND_ADDRESS:-127.0.0.1}:5555:5555"]
    assert "celery" in (project_root / "requirements.txt").read_text()  # the image has the Celery provider


def test_preflight_refuses_an_executor_without_its_workers(project_root, env_example):
    real = {k: v.replace("change-me", "s3cr3t") for k, v in {**env_example, **_owner_example(project_root)}.items()}
    real["AIRFLOW_FERNET_KEY"] = "k" * 44
    for executor, profiles, ok in (("LocalExecutor", "", True), ("CeleryExecutor", "celery", True),
                                   ("CeleryExecutor", "flower,celery", True), ("CeleryExecutor", "", False),
                                   ("CeleryExecutor", "flower", False), ("LocalExecutor", "celery", False)):
        done = _preflight(project_root, {**real, "AIRFLOW_EXECUTOR": executor, "COMPOSE_PROFILES": profiles})
        assert (done.returncode == 0) is ok, (executor, profiles, done.stderr)
        assert ok or "COMPOSE_PROFILES" in done.stderr


def test_ports_are_published_on_localhost_by_default(env_example, compose):
    published = [(n, p) for n, s in compose["services"].items() for p in s.get("ports", [])]
    assert published and all(p.startswith("${GRADEFLOW_BIND_ADDRESS:-127.0.0.1}:") for _, p in published)
    assert env_example["GRADEFLOW_BIND_ADDRESS"] == "127.0.0.1"


def _preflight(project_root, env: dict[str, str]):
    import subprocess

    return subprocess.run(["sh", str(project_root / "docker" / "check-secrets.sh")], env={"PATH": "/usr/bin:/bin",
                          **env}, capture_output=True, text=True)


def test_preflight_refuses_every_placeholder_secret(project_root, env_example, compose):
    every = {**env_example, **_owner_example(project_root)}
    placeholders = {k for k, v in every.items() if "change-me" in v}
    assert {"POSTGRES_SUPERUSER_PASSWORD", "AIRFLOW_DB_PASSWORD", "AIRFLOW_JWT_SECRET", "MINIO_ROOT_PASSWORD",
            "GRADEFLOW_DB_OWNER_PASSWORD", "AIRFLOW_CONN_GRADEFLOW_DB_OWNER",
            "AIRFLOW_CONN_GRADEFLOW_DB_NORTHFIELD", "MINIO_SECRET_NORTHFIELD", "REDIS_PASSWORD",
            "FLOWER_BASIC_AUTH"} <= placeholders
    refused = _preflight(project_root, every)
    assert refused.returncode != 0
    assert all(name in refused.stderr for name in placeholders) and "AIRFLOW_FERNET_KEY(empty)" in refused.stderr
    assert "change-me" not in refused.stderr  # names, never values
    real = {k: v.replace("change-me", "s3cr3t") for k, v in every.items()} | {"AIRFLOW_FERNET_KEY": "k" * 44}
    assert _preflight(project_root, real).returncode == 0
    for name in placeholders | {"AIRFLOW_FERNET_KEY"}:  # each one alone is enough to refuse
        assert _preflight(project_root, {**real, name: every[name]}).returncode != 0, name
    services = compose["services"]
    assert services["preflight"]["env_file"] == [{"path": ".env", "required": True},
                                                 {"path": ".env.owner", "required": True}]
    for name, service in services.items():
        if name != "preflight" and name != "minio-init":  # minio-init waits for minio, which waits for preflight
            assert "preflight" in (service.get("depends_on") or {}), name
    assert compose["x-airflow"]["environment"]["AIRFLOW__CORE__FERNET_KEY"].startswith("${AIRFLOW_FERNET_KEY:?")


def test_each_institution_has_its_own_s3_user_limited_to_its_prefixes(project_root, env_example, compose, tmp_path,
                                                                      monkeypatch):
    import subprocess

    from gradeflow.core.config import load_institutions

    institutions = load_institutions()
    tenants = dict(t.split(":") for t in env_example["GRADEFLOW_S3_TENANTS"].split())
    assert tenants == {i.id: i.s3_prefix for i in institutions}
    minio = compose["services"]["minio"]
    init = compose["services"]["minio-init"]
    for inst in institutions:
        s3 = _conn(env_example, f"{AWS_CONN_ID}_{inst.id}")
        secret = f"MINIO_SECRET_{inst.id.upper()}"
        assert (s3["login"], s3["password"]) == (f"gradeflow-{inst.id}", env_example[secret])
        assert init["environment"][secret].startswith(f"${{{secret}:?")
        endpoint = urlparse(s3["extra"]["endpoint_url"])
        assert endpoint.hostname == "minio" and any(p.endswith(f":{endpoint.port}:{endpoint.port}")
                                                    for p in minio["ports"])
    assert f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}" not in env_example  # no shared S3 login for the tasks
    # Run the init script with a stand-in `mc` that records its calls: the policy each user gets.
    fake = tmp_path / "mc"
    fake.write_text('#!/bin/sh\necho "$@" >> "$MC_LOG"\ncase "$*" in "admin policy create"*) cp "$6" '
                    '"$MC_LOG.$5.json";; esac\n')
    fake.chmod(0o755)
    log = tmp_path / "calls"
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "MC_LOG": str(log), **env_example}
    subprocess.run(["sh", str(project_root / "docker" / "init-minio.sh")], env=env, check=True, capture_output=True)
    calls = log.read_text()
    bucket_name = env_example["GRADEFLOW_BUCKET"]
    tops = ("incoming", "archive", "receipts", "rejects", "releases", "reports", "reviews", "batches")
    for inst in institutions:
        assert f"admin user add local gradeflow-{inst.id} {env_example[f'MINIO_SECRET_{inst.id.upper()}']}" in calls
        assert f"admin policy attach local gradeflow-{inst.id} --user gradeflow-{inst.id}" in calls
        policy = json.loads((tmp_path / f"calls.gradeflow-{inst.id}.json").read_text())
        objects = {r for st in policy["Statement"] if "s3:GetObject" in st["Action"] for r in st["Resource"]}
        assert objects == {f"arn:aws:s3:::{bucket_name}/{top}/{inst.s3_prefix}/*" for top in tops}
        listing = [st for st in policy["Statement"] if st["Action"] == ["s3:ListBucket"]][0]
        assert set(listing["Condition"]["StringLike"]["s3:prefix"]) == (
            {f"{top}/{inst.s3_prefix}/*" for top in tops} | {f"{top}/{inst.s3_prefix}/" for top in tops})
    assert f"mc mb --ignore-existing local/{bucket_name}" in f"mc {calls}".replace("\n", "\nmc ")
    monkeypatch.delenv("GRADEFLOW_BUCKET", raising=False)
    assert env_example["GRADEFLOW_BUCKET"] == bucket()


def test_database_credentials_match_postgres(project_root, env_example, compose):
    from gradeflow.core import db
    from gradeflow.core.config import load_institutions

    init_sh = (project_root / "docker" / "init-gradeflow-db.sh").read_text()
    database, owner = re.search(r"CREATE DATABASE (gradeflow) OWNER (\w+)", init_sh).groups()
    owner_conn = json.loads(_owner_example(project_root)[f"AIRFLOW_CONN_{POSTGRES_OWNER_CONN_ID.upper()}"])
    assert re.search(rf"CREATE ROLE {owner} LOGIN .*PASSWORD :'\w+'", init_sh) and "\\getenv" in init_sh
    assert (owner_conn["host"], owner_conn["port"], owner_conn["login"], owner_conn["password"],
            owner_conn["schema"]) == ("postgres", 5432, owner, env_example["GRADEFLOW_DB_OWNER_PASSWORD"], database)
    assert compose["services"]["postgres"]["environment"]["GRADEFLOW_DB_OWNER_PASSWORD"].startswith(
        "${GRADEFLOW_DB_OWNER_PASSWORD")
    for inst in load_institutions():  # one login per institution, its password set by migrate from this
        tenant = _conn(env_example, db.tenant_conn_id(inst.id))
        assert (tenant["host"], tenant["port"], tenant["login"], tenant["schema"]) == (
            "postgres", 5432, db.tenant_login(inst.id), database)
    assert f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}" not in env_example  # no shared worker login


def test_every_connection_id_in_code_is_configured(project_root, env_example):
    import gradeflow.core.config as config
    from gradeflow.core.config import load_institutions

    ids = {v for k, v in vars(config).items() if k.endswith("_CONN_ID")}
    per_institution = {f"{base}_{inst.id}" for base in (POSTGRES_CONN_ID, AWS_CONN_ID) for inst in load_institutions()}
    configured = {k.removeprefix("AIRFLOW_CONN_").lower() for k in {**env_example, **_owner_example(project_root)}
                  if k.startswith("AIRFLOW_CONN_")}
    assert configured == (ids - {POSTGRES_CONN_ID, AWS_CONN_ID}) | per_institution
    assert _conn(env_example, OPENAI_CONN_ID)["conn_type"] == "openai"
    for conn_id in per_institution:
        assert _conn(env_example, conn_id)["conn_type"] == ("postgres" if conn_id.startswith(POSTGRES_CONN_ID)
                                                            else "aws")
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


def test_make_test_fails_at_once_when_a_worker_crashes(project_root, tmp_path):
    """`make test`'s xdist options turn a crashed worker (a segmentation fault in a library, os._exit) into a failed
    run naming the test, not a replacement worker that runs it again or, under loadfile, waits forever for work."""
    import subprocess
    import sys

    recipe = re.search(r"^test: venv\n\t\$\(PY\) -m pytest (.+)$", (project_root / "Makefile").read_text(), re.M)
    options = recipe.group(1).replace("$(TEST_WORKERS)", "2").split()
    assert "--max-worker-restart" in options
    (tmp_path / "test_a.py").write_text("def test_a1(): pass\ndef test_a2(): pass\n")
    (tmp_path / "test_b.py").write_text("import os\ndef test_crash(): os._exit(1)\ndef test_after(): pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "crashed while running 'test_b.py::test_crash'" in done.stdout
    assert "1 failed" in done.stdout  # the crashing test once, not once per replacement worker
