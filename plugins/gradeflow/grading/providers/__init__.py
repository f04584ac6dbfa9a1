"""Batch providers: the one seam between the night (gradeflow.grading.night) and a model service.

`base.BatchProvider` is what the night needs from a provider (upload a JSONL input file, create a
batch, retrieve its status, cancel it, list it again by its metadata, read its result and error
lines, its limits, token counting and prices); `get(name)` / `for_institution(inst)` pick one by the
name an institution sets in include/institutions.yaml (`provider:`). Two providers:

- `openai_batch`: the OpenAI Batch API through the official SDK (the default; today's behaviour).
- `openai_chat`: any OpenAI-compatible `/v1/chat/completions` endpoint (vLLM, llama.cpp, Ollama, a
  regional endpoint) run as a local batch: the same JSONL in and out, so collect and the ledger do
  not know the difference.

This is the only place in gradeflow that imports `openai` (tests/unit/test_providers_seam.py).
May import: gradeflow.core and gradeflow.grading.batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradeflow.grading.providers import openai_batch, openai_chat
from gradeflow.grading.providers.base import PROVIDERS, BatchProvider, Limits, ProviderError, register

if TYPE_CHECKING:
    from gradeflow.core.config import Institution, OpenAISettings

__all__ = ["PROVIDERS", "BatchProvider", "Limits", "ProviderError", "as_provider", "for_institution", "get", "names",
           "openai_batch", "openai_chat", "register"]


def names() -> tuple[str, ...]:
    """Every registered provider name."""
    return tuple(sorted(PROVIDERS))


def get(name: str, inst: Institution | None = None, settings: OpenAISettings | None = None,
        **options: Any) -> BatchProvider:
    """The provider called `name`, built for `inst`; a ProviderError naming the known ones otherwise."""
    cls = PROVIDERS.get(name)
    if cls is None:
        raise ProviderError(f"unknown batch provider {name!r}; known: {sorted(PROVIDERS)}")
    return cls(inst, settings, **options)


def for_institution(inst: Institution, settings: OpenAISettings | None = None, **options: Any) -> BatchProvider:
    """The provider the institution chose in include/institutions.yaml (`provider:`, default openai_batch)."""
    return get(inst.provider, inst, settings, **options)


def as_provider(obj: Any, inst: Institution | None = None, settings: OpenAISettings | None = None) -> BatchProvider:
    """`obj` itself when it is a provider; an OpenAI SDK client (what tests and benches hold) is wrapped
    as the openai_batch provider, exactly today's behaviour."""
    if isinstance(obj, BatchProvider):
        return obj
    if obj is None:
        raise ProviderError("no batch provider given")
    return get("openai_batch", inst, settings, sdk_client=obj)
