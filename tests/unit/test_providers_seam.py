"""The provider seam's shape: only gradeflow.grading.providers imports `openai`; the provider names and the
chat options that institutions.yaml accepts are the ones the providers register; bad provider settings are named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gradeflow.core.config import CHAT_OPTIONS, PROVIDER_NAMES, ConfigError, load_institutions
from gradeflow.grading import providers
from gradeflow.grading.providers import openai_chat

PKG = Path(__file__).resolve().parents[2] / "plugins" / "gradeflow"
SEAM = PKG / "grading" / "providers"


def _imports_openai(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):  # TYPE_CHECKING and lazy imports count too
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] == "openai" for name in names):
            lines.append(node.lineno)
    return lines


def test_no_module_outside_the_providers_imports_openai():
    found = {str(p.relative_to(PKG)): lines for p in sorted(PKG.rglob("*.py"))
             if SEAM not in p.parents and (lines := _imports_openai(p))}
    assert found == {}, f"import openai only in gradeflow/grading/providers: {found}"
    assert _imports_openai(SEAM / "openai_batch.py"), "the check would not see an import (it must be able to fail)"


def test_the_config_accepts_exactly_the_registered_providers_and_chat_options():
    assert set(PROVIDER_NAMES) == set(providers.names())
    assert set(openai_chat.DEFAULTS) == CHAT_OPTIONS
    for name in providers.names():
        assert providers.PROVIDERS[name].name == name


def test_an_unknown_provider_is_refused_by_name():
    with pytest.raises(providers.ProviderError, match="unknown batch provider 'anthropic_batch'.*openai_batch"):
        providers.get("anthropic_batch")


@pytest.mark.parametrize(("fields", "message"), [
    ("provider: vllm", "field 'provider' must be one of"),
    ("provider: openai_chat", "provider 'openai_chat' needs field 'conn_id'"),
    ("{provider: openai_chat, conn_id: 'http://user:key@host/v1'}", "field 'conn_id' must be an Airflow connection id"),
    ("{provider: openai_chat, conn_id: own_llm, chat: {concurrency: 0}}", "must be a positive whole"),
    ("{provider: openai_chat, conn_id: own_llm, chat: {concurrency: 2.5}}", "'chat.concurrency' must be a positive"),
    ("{provider: openai_chat, conn_id: own_llm, chat: {speed: 3}}", "'chat' has unknown option"),
    ("{provider: openai_batch, chat: {concurrency: 2}}", "field 'chat' is only for provider 'openai_chat'"),
])
def test_bad_provider_settings_are_named(tmp_path, fields, message):
    extra = fields if fields.startswith("{") else "{" + fields + "}"
    entry = "{id: aa, name: A, timezone: UTC, " + extra[1:-1] + "}"
    path = tmp_path / "institutions.yaml"
    path.write_text(f"institutions:\n  - {entry}\n")
    with pytest.raises(ConfigError, match=message):
        load_institutions(path)


def test_a_chat_institution_is_parsed_with_its_connection_and_options(tmp_path):
    path = tmp_path / "institutions.yaml"
    path.write_text("institutions:\n  - {id: aa, name: A, timezone: UTC, provider: openai_chat, conn_id: aa_llm,\n"
                    "      chat: {concurrency: 8, requests_per_minute: 120}}\n  - {id: bb, name: B, timezone: UTC}\n")
    chat, default = load_institutions(path)
    assert (chat.provider, chat.conn_id, dict(chat.chat)) == (
        "openai_chat", "aa_llm", {"concurrency": 8, "requests_per_minute": 120.0})
    assert (default.provider, default.conn_id, default.chat) == ("openai_batch", None, ())
    provider = providers.for_institution(chat, s3=object())
    assert (provider.name, provider.runs_locally, provider.conn_id) == ("openai_chat", True, "aa_llm")
    assert provider.options["concurrency"] == 8
    assert provider.options["chunk_lines"] == openai_chat.DEFAULTS["chunk_lines"]
    assert provider.limits().enqueued_token_cap is None  # nothing to reserve under the Batch API's cap
    batch = providers.for_institution(default)
    assert (batch.name, batch.runs_locally, batch.conn_id) == ("openai_batch", False, "gradeflow_openai")
