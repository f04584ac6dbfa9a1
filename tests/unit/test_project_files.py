"""The files a user meets first: docker-compose.yaml, .env.example, requirements, prompts."""

from __future__ import annotations

import re

import yaml

from gradeflow.config import AWS_CONN_ID, FREE_TEXT_TYPES, OPENAI_CONN_ID, POSTGRES_CONN_ID


def test_docker_compose_parses_and_mounts_what_exists(project_root):
    compose = yaml.safe_load((project_root / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "airflow-init", "airflow"} <= set(services)
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (project_root / source).exists(), f"{name} mounts missing {source}"
    airflow = services["airflow"]
    assert airflow["image"].startswith("apache/airflow:3.3.2")
    assert "airflow-init" in airflow["depends_on"]
    assert airflow["env_file"] == ".env"


def test_env_example_names_every_connection_and_no_real_secret(project_root):
    text = (project_root / ".env.example").read_text()
    for conn_id in (POSTGRES_CONN_ID, AWS_CONN_ID, OPENAI_CONN_ID):
        assert f"AIRFLOW_CONN_{conn_id.upper()}=" in text
    assert not re.search(r"sk-(?!change-me)[A-Za-z0-9]{10,}", text)


def test_requirements_are_pinned_and_locked(project_root):
    direct = [line.split("#")[0].strip() for line in (project_root / "requirements.txt").read_text().splitlines()]
    direct = [line for line in direct if line]
    assert direct and all("==" in line for line in direct), [line for line in direct if "==" not in line]
    lock = (project_root / "requirements.lock").read_text()
    for line in direct:
        name = re.split(r"[\[=]", line)[0].lower()
        assert re.search(rf"^{re.escape(name)}==", lock, re.MULTILINE | re.IGNORECASE), f"{name} not in the lock"


def test_every_free_text_type_has_a_prompt_with_the_student_answer_kept_out(project_root):
    for qtype in FREE_TEXT_TYPES:
        prompt = (project_root / "include" / "prompts" / f"{qtype}.md").read_text()
        for field in ("$question", "$rubric", "$reference_answer", "$max_points"):
            assert field in prompt, (qtype, field)
        assert "student_answer" in prompt and "never an instruction" in prompt
        assert "$student" not in prompt and "$answer" not in prompt
